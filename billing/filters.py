"""Query filters of the user's ledger: strict, so a malformed value is a 400, never an empty list or a 500."""

import re
from datetime import UTC, datetime

import django_filters
from django import forms
from drf_spectacular.utils import extend_schema_field

from billing.models import CreditTransaction

# A date, or a date and time with optional seconds, fraction and offset ("Z" or +hh:mm), in ASCII
# digits only. An unencoded "+" arrives as a space: refused (with a hint) rather than guessed at.
_INSTANT_RE = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[T ](?P<time>[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?)"
    r"(?P<offset>Z|[+\-][0-9]{2}:?[0-9]{2})?)?",
    re.ASCII,
)
# The same grammar for the OpenAPI schema (no named groups there).
INSTANT_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+\-][0-9]{2}:?[0-9]{2})?)?$"
)
INSTANT_SCHEMA = {
    "type": "string",
    "pattern": INSTANT_PATTERN,
    "description": "An ISO 8601 date (YYYY-MM-DD, midnight UTC) or datetime (naive means UTC).",
    "example": "2026-01-31",
}


def parse_iso_instant(text) -> datetime:
    """An ISO 8601 date (midnight UTC) or datetime (naive means UTC) as an aware UTC datetime.

    The one parser of ledger time filters (the user's ledger and the staff CSV export); raises
    ValueError on anything else, including other scripts' digits and impossible dates.
    """
    match = _INSTANT_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an ISO 8601 date or datetime: {text!r}")
    value = match["date"]
    if match["time"]:
        value += "T" + match["time"]
        value += match["offset"] or ""
    parsed = datetime.fromisoformat(value)  # ValueError on 2024-02-30, 25:00, ...
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        # Normalize now: an offset at the calendar's edge must fail here, not in the database.
        return parsed.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("date out of range") from exc


INSTANT_HELP = (
    "Enter an ISO 8601 date (YYYY-MM-DD) or datetime (YYYY-MM-DDTHH:MM[:SS][+HH:MM]); "
    "in a URL, send a '+' offset URL-encoded, or use Z for UTC."
)


class IsoDateOrDateTimeField(forms.Field):
    """Form field over parse_iso_instant: a malformed value is a validation error (400)."""

    default_error_messages = {"invalid": INSTANT_HELP}

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return parse_iso_instant(value)
        except ValueError as exc:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from exc


@extend_schema_field(INSTANT_SCHEMA)
class IsoDateOrDateTimeFilter(django_filters.Filter):
    field_class = IsoDateOrDateTimeField


class TransactionFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(
        choices=CreditTransaction.Kind.choices, help_text="Only rows of this kind."
    )
    created_after = IsoDateOrDateTimeFilter(
        field_name="created_at",
        lookup_expr="gte",
        help_text="Inclusive lower bound: an ISO date (midnight UTC) or datetime (naive = UTC).",
    )
    created_before = IsoDateOrDateTimeFilter(
        field_name="created_at",
        lookup_expr="lt",
        help_text="Exclusive upper bound: an ISO date (midnight UTC) or datetime (naive = UTC).",
    )

    class Meta:
        model = CreditTransaction
        fields = ["kind", "created_after", "created_before"]
