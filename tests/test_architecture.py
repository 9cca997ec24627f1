"""The floors hold (docs/architecture.md): no SQL text outside migrations names another app's tables.

import-linter (`make test` runs `lint-imports`) keeps the imports pointing down; this keeps the SQL
inside its app: a table is named, as a literal or through `Model._meta.db_table`, only by the app
that owns it (core owns one: the rate limits; web owns none).
"""

import ast
import re
from pathlib import Path

from django.apps import apps

ROOT = Path(__file__).resolve().parent.parent
PROJECT_APPS = ("core", "accounts", "billing", "sessions_app", "reporting", "notifications", "web")
CHECKED = PROJECT_APPS


def _tables_by_app() -> dict[str, set[str]]:
    """Each app's own tables (a proxy model shares the table of its concrete model, another app's)."""
    return {
        label: {m._meta.db_table for m in apps.get_app_config(label).get_models() if not m._meta.proxy}
        for label in PROJECT_APPS
    }


def _sources(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" not in path.parts:
            yield path


def _strings(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def _foreign_models(tree: ast.AST, package: str) -> set[str]:
    """Names a module imported from another app's package (its models, mostly)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top = node.module.split(".")[0]
            if top in PROJECT_APPS and top != package:
                names.update(alias.asname or alias.name for alias in node.names)
    return names


def _db_table_reads(tree: ast.AST):
    """(line, name) for each `name._meta.db_table`."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "db_table"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "_meta"
            and isinstance(node.value.value, ast.Name)
        ):
            yield node.lineno, node.value.value.id


def find_foreign_table_references() -> list[str]:
    tables = _tables_by_app()
    found = []
    for package in CHECKED:
        foreign = {t: owner for owner, names in tables.items() if owner != package for t in names}
        pattern = re.compile(
            r"\b(" + "|".join(sorted(map(re.escape, foreign), key=len, reverse=True)) + r")\b"
        )
        for path in _sources(package):
            tree = ast.parse(path.read_text(), filename=str(path))
            where = path.relative_to(ROOT)
            for line, text in _strings(tree):
                for match in pattern.finditer(text):
                    found.append(f"{where}:{line} names {foreign[match.group(1)]}'s table {match.group(1)}")
            imported = _foreign_models(tree, package)
            for line, name in _db_table_reads(tree):
                if name in imported:
                    found.append(f"{where}:{line} reads {name}._meta.db_table, another app's table")
    return found


def test_no_sql_outside_migrations_names_another_apps_table():
    assert find_foreign_table_references() == []


def test_the_check_finds_a_foreign_table_in_sql(tmp_path, monkeypatch):
    """The check can fail: a module of reporting that names billing's wallet table is caught."""
    (tmp_path / "reporting").mkdir()
    (tmp_path / "reporting" / "bad.py").write_text(
        'from billing.models import Wallet\nSQL = "SELECT balance FROM billing_wallet"\nT = Wallet._meta.db_table\n'
    )
    for package in CHECKED:
        if package != "reporting":
            (tmp_path / package).mkdir()
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert find_foreign_table_references() == [
        "reporting/bad.py:2 names billing's table billing_wallet",
        "reporting/bad.py:3 reads Wallet._meta.db_table, another app's table",
    ]
