"""Text from outside (a model's answer, a user's file, a query string) as PostgreSQL can store it."""

import re

# Lone surrogates (JSON's "\ud800" without its pair) are no UTF-8 at all: they can be neither stored
# nor sent. In a Python str every surrogate is a lone one.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Those, and a NUL, which a PostgreSQL text value cannot hold.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"
NUL = "\x00"


def storable(text: str) -> str:
    """`text` with each NUL and lone surrogate replaced by U+FFFD (the text itself when it has none)."""
    return UNSTORABLE.sub(REPLACEMENT, text) if UNSTORABLE.search(text) else text


def storable_json(value):
    """Decoded JSON with storable() applied to every string in it, keys included: JSON's escapes
    (`"\\u0000"`, a lone `"\\ud800"`) decode to what a jsonb value cannot hold either."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(key): storable_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable_json(item) for item in value]
    return value


def nul_query_params(query_params) -> list[str]:
    """The query parameters with a NUL character in their name or a value, named printably (NUL as \\x00)."""
    return sorted(
        {
            key.replace(NUL, "\\x00")
            for key, values in query_params.lists()
            if NUL in key or any(NUL in value for value in values)
        }
    )
