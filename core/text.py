"""Text from outside (a model's answer, a user's file) as PostgreSQL can store it."""

import re

# A NUL, which a PostgreSQL text value cannot hold, and lone surrogates (JSON's "\ud800" without its
# pair), which are no UTF-8 at all. In a Python str every surrogate is a lone one.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable(text: str) -> str:
    """`text` with each NUL and lone surrogate replaced by U+FFFD (the text itself when it has none)."""
    return UNSTORABLE.sub(REPLACEMENT, text) if UNSTORABLE.search(text) else text
