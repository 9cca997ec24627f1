"""Money: the one quantizing helper and the one strict parser of amounts (API.md "Precise rules")."""

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

PLACES = 6
QUANTUM = Decimal(1).scaleb(-PLACES)  # 0.000001
MAX_DIGITS = 20
# ASCII digits, an optional leading "-", an optional "." with a fraction. No exponent, no "_",
# no "+", no other script's digits (re.ASCII keeps \d honest, but spell it out anyway).
_AMOUNT_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)
_MAX_TEXT = 64  # no legitimate amount is longer; refuse 2,000-digit numbers before any arithmetic


class AmountError(ValueError):
    """An amount that is not a well-formed decimal with at most 6 places."""


def quantize(value: Decimal) -> Decimal:
    """Round to 6 places (half up); the only place money is rounded."""
    return value.quantize(QUANTUM, rounding=ROUND_HALF_UP)


def to_decimal(value) -> Decimal:
    """A database value (numeric, or an integer sum) as a 6-place Decimal."""
    return quantize(value if isinstance(value, Decimal) else Decimal(value))


def format_money(value: Decimal) -> str:
    """The wire format: a plain decimal string with exactly 6 places ("12.500000"); zero has no sign."""
    value = quantize(value)
    return format(value.copy_abs() if value.is_zero() else value, "f")


def parse_amount(raw) -> Decimal:
    """Parse a JSON string or number exactly into a Decimal of at most 6 places, or raise AmountError."""
    if isinstance(raw, bool) or raw is None:
        raise AmountError("A valid number is required.")
    if isinstance(raw, int):
        text = str(raw) if abs(raw) < 10**_MAX_TEXT else ""
    elif isinstance(raw, Decimal):
        # A JSON number from core.api.StrictJSONParser carries its spelling in `source`.
        text = getattr(raw, "source", None) or format(raw, "f")
    elif isinstance(raw, str):
        text = raw
    else:
        raise AmountError("A valid number is required.")
    if not text or len(text) > _MAX_TEXT or not _AMOUNT_RE.fullmatch(text):
        raise AmountError(
            "A valid number is required: ASCII digits with an optional '.' and fraction, "
            'no exponent (e.g. "12.5").'
        )
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only valid decimals
        raise AmountError("A valid number is required.") from exc
    if value and value.adjusted() >= MAX_DIGITS - PLACES:
        raise AmountError(
            f"Ensure that there are no more than {MAX_DIGITS - PLACES} digits before the decimal point."
        )
    if value != value.quantize(QUANTUM, rounding=ROUND_HALF_UP):
        raise AmountError(f"Ensure that there are no more than {PLACES} decimal places.")
    value = quantize(value)
    return value.copy_abs() if value.is_zero() else value  # "-0" is zero, not a negative amount
