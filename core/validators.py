"""Validators every app shares: the grammar of an idempotency key (staff money writes, turns), and of a moment."""

import re
import string
from datetime import UTC, datetime

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


# An ISO 8601 date-time as the API, the admin and the commands take it: a date and a time (seconds
# and a fraction optional), then "Z", an offset or nothing. A date alone is not a moment.
ISO_DATETIME_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?",
    re.ASCII | re.IGNORECASE,
)


# The latest moment a date-time the product stores may name (an expiry): one every time zone can still
# show. Python's datetime ends with year 9999; PostgreSQL would store a later one no page could read back.
LATEST_MOMENT = datetime(9999, 1, 1, tzinfo=UTC)


def parse_iso_datetime(text: str) -> datetime | None:
    """`text` (a whole ISO 8601 date-time, nothing before or after it) as a datetime, naive when it
    names no offset; None when it is not one, or names a moment UTC cannot hold (past year 9999)."""
    if not ISO_DATETIME_RE.fullmatch(text):
        return None
    try:
        value = datetime.fromisoformat(text)
        if value.tzinfo is not None:
            value.astimezone(UTC)  # 9999-12-31T23:00-05:00 is in year 10000 in UTC
    except (ValueError, OverflowError):
        return None
    return value
