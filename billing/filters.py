"""Query filters of the user's ledger: strict, so a malformed value is a 400, never an empty list or a 500."""

from datetime import UTC, datetime, time

import django_filters
from django import forms
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError

from billing.models import CreditTransaction

NUL = "\x00"


def reject_nul_query_params(request) -> None:
    """400 on a NUL character in any query parameter name or value (no database accepts them)."""
    bad = sorted(
        {
            key.replace(NUL, "\\x00")
            for key, values in request.query_params.lists()
            if NUL in key or any(NUL in value for value in values)
        }
    )
    if bad:
        raise ValidationError({name: ["Null characters are not allowed."] for name in bad})


class IsoDateOrDateTimeField(forms.Field):
    """An ISO 8601 date (midnight UTC) or datetime (naive means UTC), as an aware UTC datetime."""

    default_error_messages = {
        "invalid": (
            "Enter an ISO 8601 date (YYYY-MM-DD) or datetime (YYYY-MM-DDTHH:MM[:SS][+HH:MM]); "
            "in a URL, send a '+' offset URL-encoded, or use Z for UTC."
        ),
        "range": "This date is out of the supported range.",
    }

    def to_python(self, value):
        if value in self.empty_values:
            return None
        text = str(value).strip()
        try:
            parsed = parse_datetime(text)
            if parsed is None:
                day = parse_date(text)
                if day is None:
                    raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
                parsed = datetime.combine(day, time.min)
            if timezone.is_naive(parsed):
                parsed = parsed.replace(tzinfo=UTC)
            # Normalize now: an offset at the calendar's edge must fail here, not in the database.
            return parsed.astimezone(UTC)
        except forms.ValidationError:
            raise
        except ValueError as exc:  # e.g. "2024-02-30", "25:00", an offset over 24h
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from exc
        except OverflowError as exc:
            raise forms.ValidationError(self.error_messages["range"], code="range") from exc


@extend_schema_field(
    {
        "type": "string",
        "description": "An ISO 8601 date (YYYY-MM-DD, midnight UTC) or datetime (naive means UTC).",
        "example": "2026-01-31",
    }
)
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
