"""Strict query-string parsing for the staff reports: the usage summary and the ledger export."""

import re
from datetime import date, datetime, timedelta

from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.filters import INSTANT_HELP, INSTANT_SCHEMA, parse_iso_instant
from billing.models import CreditTransaction
from core.api_fields import MAX_ID, blank_is_absent, reject_nul_query_params
from reporting.selectors import BUCKETS, DEFAULT_RANGE_DAYS, default_range

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
# Dates whose local midnight and next midnight exist as datetimes in any time zone. Every report
# (this API, the admin's usage page) takes dates in these bounds, so billing's readers never step a
# day past the calendar's end.
MIN_DATE, MAX_DATE = date(1, 1, 2), date(9999, 12, 30)
MODEL_NAME_MAX = 100


def default_start(end: date) -> date:
    """The first day of the default-length range ending on `end`, clamped at the earliest date we accept."""
    return default_range(end)[0] if end - MIN_DATE >= timedelta(DEFAULT_RANGE_DAYS) else MIN_DATE


@extend_schema_field(OpenApiTypes.DATE)
class StrictDateField(serializers.Field):
    """A calendar date spelled YYYY-MM-DD in ASCII digits; nothing else."""

    default_error_messages = {"invalid": "Enter a date as YYYY-MM-DD (e.g. 2026-01-31)."}

    def to_internal_value(self, data) -> date:
        if not isinstance(data, str) or not _DATE_RE.fullmatch(data):
            self.fail("invalid")
        try:
            value = date.fromisoformat(data)
        except ValueError:
            self.fail("invalid")
        if not MIN_DATE <= value <= MAX_DATE:
            raise serializers.ValidationError(f"Enter a date between {MIN_DATE} and {MAX_DATE}.")
        return value

    def to_representation(self, value: date) -> str:
        return value.isoformat()


@extend_schema_field(INSTANT_SCHEMA)
class IsoDateOrDateTimeField(serializers.Field):
    """billing.filters.parse_iso_instant as a serializer field: the user's ledger and the export agree."""

    default_error_messages = {"invalid": INSTANT_HELP}

    def to_internal_value(self, data) -> datetime:
        try:
            return parse_iso_instant(data)
        except ValueError:
            self.fail("invalid")

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


# Digits enough for any id a row can have (PostgreSQL bigint); a longer number is past them all.
_ID_DIGITS = len(str(MAX_ID))


@extend_schema_field({"type": "integer", "minimum": 1})
class StrictIdField(serializers.Field):
    """A positive integer id in ASCII digits (no sign, spaces, fraction or other scripts' digits).

    Any positive whole number is an id a filter may name: one past the largest a row can have
    (core.api_fields.MAX_ID) names no row, so the report is empty (reporting.selectors answers it
    without asking the database, whose bigint columns cannot compare it), as for an unknown id.
    A number longer than any id is read as MAX_ID + 1: Python will not parse 4300 digits and more.
    """

    default_error_messages = {"invalid": "Enter {what}: a positive whole number (e.g. 42)."}

    def __init__(self, *, what: str = "an id", **kwargs):
        self.what = what  # what the id names, for the message ("a user id", "an API key's id")
        super().__init__(**kwargs)

    def fail(self, key, **kwargs):
        super().fail(key, what=self.what, **kwargs)

    def to_internal_value(self, data) -> int:
        digits = data.lstrip("0") if isinstance(data, str) and data.isascii() and data.isdigit() else ""
        if not digits:  # not ASCII digits, or zero
            self.fail("invalid")
        return int(digits) if len(digits) <= _ID_DIGITS else MAX_ID + 1

    def to_representation(self, value: int) -> int:
        return value


class UsageSummaryQuerySerializer(serializers.Serializer):
    """`bucket`, `start`, `end`, `user_id`, `model`; fills in the default range and checks its order."""

    bucket = serializers.ChoiceField(
        choices=BUCKETS,
        required=False,
        help_text="day, week (starting Monday) or month; absent or empty: totals only.",
        error_messages={
            "invalid_choice": "Unknown bucket {input!r}; use day, week or month, or leave it out."
        },
    )
    start = StrictDateField(
        required=False, help_text="First day (inclusive), YYYY-MM-DD, in REPORT_TIME_ZONE."
    )
    end = StrictDateField(required=False, help_text="Last day (inclusive), YYYY-MM-DD, in REPORT_TIME_ZONE.")
    user_id = StrictIdField(
        what="a user id", required=False, help_text="Only this user's calls (an unknown id gives zeros)."
    )
    model = serializers.CharField(
        required=False,
        # Kept as sent: " x" names no model, which is zeros, not a malformed filter.
        trim_whitespace=False,
        max_length=MODEL_NAME_MAX,
        help_text="Only calls to this model (an unknown model gives zeros).",
    )
    key_id = StrictIdField(
        what="an API key's id",
        required=False,
        help_text="Only the calls made with this API key (an unknown id gives zeros).",
    )

    @classmethod
    def from_query(cls, query_params: QueryDict) -> "UsageSummaryQuerySerializer":
        reject_nul_query_params(query_params)
        return cls(data=blank_is_absent(query_params, cls._declared_fields))

    def validate(self, attrs):
        start, end = attrs.get("start"), attrs.get("end")
        if start is None and end is None:
            start, end = default_range()
        elif start is None:
            start = default_start(end)
        elif end is None:
            end = default_range()[1]
        if start > end:
            raise serializers.ValidationError(
                {"start": [f"start ({start}) is after end ({end}); the range is start..end, both inclusive."]}
            )
        attrs["start"], attrs["end"] = start, end
        attrs.setdefault("bucket", None)
        return attrs


class LedgerExportQuerySerializer(serializers.Serializer):
    """The user ledger's filters (`kind`, `created_after` inclusive, `created_before` exclusive) and `user_id`."""

    kind = serializers.ChoiceField(
        choices=CreditTransaction.Kind.choices,
        required=False,
        error_messages={
            "invalid_choice": (
                "Unknown kind {input!r}; use one of " + ", ".join(CreditTransaction.Kind.values) + "."
            )
        },
    )
    created_after = IsoDateOrDateTimeField(required=False, help_text="Rows at or after this date/datetime.")
    created_before = IsoDateOrDateTimeField(
        required=False, help_text="Rows strictly before this date/datetime."
    )
    user_id = StrictIdField(
        what="a user id", required=False, help_text="Only this user's ledger (an unknown id gives no rows)."
    )

    @classmethod
    def from_query(cls, query_params: QueryDict) -> "LedgerExportQuerySerializer":
        reject_nul_query_params(query_params)
        return cls(data=blank_is_absent(query_params, cls._declared_fields))


class MyUsageQuerySerializer(UsageSummaryQuerySerializer):
    """The staff summary's query for the caller's own calls (no `user_id`), plus `group_by=key`."""

    user_id = None
    group_by = serializers.ChoiceField(
        choices=["key"],
        required=False,
        help_text="key: add `by_key`, the calls, failed calls and cost per API key.",
    )
