"""Validators every app shares: the grammar of an idempotency key (staff money writes, turns)."""

import string

from core.errors import InvalidInput

IDEMPOTENCY_KEY_MAX = 255
_PRINTABLE_ASCII = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")


def validate_idempotency_key(key) -> str:
    """The key itself, or InvalidInput (400 on `idempotency_key`): 1 to 255 printable ASCII characters."""
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX
        or not set(key) <= _PRINTABLE_ASCII
    ):
        raise InvalidInput(
            f"An idempotency key is 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters.",
            field="idempotency_key",
        )
    return key
