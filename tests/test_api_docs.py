"""docs/api.md keeps step with the schema: every operation has its heading, and no heading is invented."""

import re
from pathlib import Path

from drf_spectacular.generators import SchemaGenerator

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
# The convention of docs/api.md: each operation is a heading "### `METHOD /api/v1/path/`" (or
# "/v1/path/" for the OpenAI-compatible gateway).
HEADING = re.compile(r"^#{2,4} `(GET|POST|PUT|PATCH|DELETE) (/(?:api/)?v1/\S*)`\s*$", re.MULTILINE)


def _schema_operations() -> set[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {(method.upper(), path) for path, methods in schema["paths"].items() for method in methods}


def _documented_operations() -> set[tuple[str, str]]:
    return set(HEADING.findall(DOC.read_text(encoding="utf-8")))


def test_every_operation_of_the_schema_is_documented():
    missing = _schema_operations() - _documented_operations()

    assert not missing, f"docs/api.md has no heading for: {sorted(missing)}"


def test_the_doc_documents_no_operation_the_server_does_not_have():
    invented = _documented_operations() - _schema_operations()

    assert not invented, f"docs/api.md names operations the schema lacks: {sorted(invented)}"


def test_the_readme_links_the_api_doc_and_nothing_outside_the_repository():
    readme = (DOC.parent.parent / "README.md").read_text(encoding="utf-8")

    assert "docs/api.md" in readme
    assert "../" not in readme


def test_the_interactive_docs_pages_name_no_other_host(client):
    """The docs are served offline (drf-spectacular-sidecar): a page that links another host (ReDoc's
    template links Google's web fonts) waits on it, or on a CSP refusal, on a machine without internet."""
    for path in ("/api/v1/docs/", "/api/v1/redoc/"):
        page = client.get(path).content.decode()
        assert re.findall(r"(?:href|src)=\"(?:https?:)?//[^\"]*\"", page) == [], path
