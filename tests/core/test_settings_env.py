"""Settings from the environment: a value its setting cannot take stops start-up, naming the variable."""

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings import StrictEnv

ROOT = Path(__file__).resolve().parents[2]


def env_with(**values) -> StrictEnv:
    env = StrictEnv()
    env.ENVIRON = values
    return env


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("True", True), ("1", True), ("yes", True), ("ON", True), (" on ", True)]
    + [("false", False), ("0", False), ("no", False), ("off", False), ("", False)],
)
def test_a_switch_reads_the_usual_spellings(raw, expected):
    assert env_with(SWITCH=raw).bool("SWITCH", default=not expected) is expected


@pytest.mark.parametrize("raw", ["maybe", "enabled", "2", "yess", "tru"])
def test_a_switch_that_is_neither_stops_start_up_instead_of_reading_as_false(raw):
    with pytest.raises(ImproperlyConfigured, match="CREDIT_ENFORCEMENT_ENABLED=.* is not a switch"):
        env_with(CREDIT_ENFORCEMENT_ENABLED=raw).bool("CREDIT_ENFORCEMENT_ENABLED", default=False)


@pytest.mark.parametrize(
    ("method", "raw", "kind"),
    [
        ("int", "abc", "a whole number"),
        ("int", "1.5", "a whole number"),
        ("float", "ten", "a number"),
        ("decimal", "abc", "a decimal amount"),
        ("decimal", "1,5", "a decimal amount"),
        ("decimal", "", "a decimal amount"),
    ],
)
def test_a_number_that_does_not_parse_names_its_variable(method, raw, kind):
    with pytest.raises(ImproperlyConfigured, match=f"SETTING='{raw}' is not {kind}"):
        getattr(env_with(SETTING=raw), method)("SETTING", default="1")


def test_numbers_parse_exactly_and_nan_is_left_to_the_checks():
    env = env_with(A="0.1", B=" 42 ", C="nan", D="2.5")
    assert env.decimal("A", default="1") == Decimal("0.1")
    assert env.int("B", default=1) == 42
    assert env.float("C", default=1.0) != env.float("C", default=1.0)  # NaN: the system checks refuse it
    assert env.float("D", default=1.0) == 2.5
    assert env_with().decimal("A", default="1.000000") == Decimal("1.000000")  # unset: the default
    assert env_with(E="").int("E", default=None) is None  # empty where the default is None: unset


def _run_with(*argv: str, **variables: str) -> subprocess.CompletedProcess:
    """`argv` run by this Python in the checkout with only `variables` set (and a database URL and
    secret key, which are never read here): what start-up makes of them."""
    return subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
            "SECRET_KEY": "x",
            **variables,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_manage_py_refuses_to_start_on_a_switch_it_cannot_read():
    result = _run_with("manage.py", "check", CREDIT_ENFORCEMENT_ENABLED="maybe")
    assert result.returncode != 0
    assert "CREDIT_ENFORCEMENT_ENABLED='maybe' is not a switch" in result.stderr


@pytest.mark.parametrize(
    ("variable", "raw", "says"),
    [
        ("LOG_LEVEL", "bogus", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'bogus'"),
        ("CACHE_URL", "garbage", "CACHE_URL is not a cache URL (it has no scheme): set it to redis://"),
        ("CACHE_URL", "ftp://user:hunter2@cache/", "CACHE_URL is not a cache URL (its scheme is 'ftp')"),
    ],
)
def test_a_log_level_or_cache_url_it_cannot_use_stops_start_up_naming_the_variable(variable, raw, says):
    # They were a 32-line traceback ending "Unable to configure root logger", and "Invalid cache schema ".
    result = _run_with("manage.py", "check", **{variable: raw})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {says}" in result.stderr.strip().splitlines()[-1], result.stderr
    assert "hunter2" not in result.stderr  # a cache URL may carry a password


def test_a_log_level_is_read_in_any_case():
    result = _run_with("-c", "from config import settings; print(settings.LOG_LEVEL)", LOG_LEVEL="warning")
    assert result.stdout.strip() == "WARNING", result.stderr


def test_rotated_secrets_are_read_from_the_environment():
    # SECRET_KEY_FALLBACKS keeps sessions signed with the old key valid while a new one rolls out;
    # WEBHOOK_SECRET_PREVIOUS signs deliveries with the old webhook secret too.
    script = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"
        "from django.conf import settings; from django.core import signing;"
        "old = signing.dumps('hi', key='old-key');"
        "print(settings.SECRET_KEY_FALLBACKS, settings.WEBHOOK_SECRET_PREVIOUS, signing.loads(old))"
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
            "SECRET_KEY": "new-key",
            "SECRET_KEY_FALLBACKS": "old-key,older-key",
            "WEBHOOK_SECRET_PREVIOUS": "whsec-old",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "['old-key', 'older-key'] whsec-old hi", result.stderr


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgres://postgres@127.0.0.1:9/creditdesk", "Connection refused"),  # nothing listens there
        ("postgres://postgres@127.0.0.1:5432/creditdesk_no_such_database", "does not exist"),
    ],
)
def test_a_command_on_a_database_it_cannot_reach_says_so_in_two_lines(url, why):
    # It was ten seconds of pool warnings, then a 95-line traceback with the cause buried in it.
    result = subprocess.run(
        [sys.executable, "manage.py", "check_ledger"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": url, "SECRET_KEY": "x", "DATABASE_POOL_TIMEOUT": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-2:]
    assert "could not be reached" in last[0] and why in last[0], result.stderr
    assert last[1].startswith("Check DATABASE_URL")


def test_a_production_server_before_collectstatic_is_warned(settings):
    from core.checks import check_static_files_collected

    settings.DEBUG, settings.TESTING, settings.STATIC_COLLECTED = False, False, False
    (warning,) = check_static_files_collected()
    assert warning.id == "core.W001" and "collectstatic has not run" in warning.msg
    settings.STATIC_COLLECTED = True
    assert check_static_files_collected() == []


def test_every_variable_the_settings_read_is_in_the_readme_and_env_example():
    """docs/api.md sends readers to both for "the full list"; CSRF_TRUSTED_ORIGINS, CONN_MAX_AGE and others were in neither."""
    import re

    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z0-9_]+)"', (ROOT / "config" / "settings.py").read_text()))
    read -= {"DJANGO_SETTINGS_MODULE"}  # pytest's or manage.py's, not an operator's
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    assert read > {"DATABASE_URL", "LOG_LEVEL"}  # the pattern finds them
    assert sorted(name for name in read if f"`{name}`" not in readme) == []
    assert sorted(name for name in read if not re.search(rf"^#? ?{name}=", example, re.M)) == []
