"""The test oracle for the usage rollups: the usage summary recounted straight from the events.

The server never scans events to answer a report (reporting.selectors reads the rollups); tests
compare its answers with this independent recount.
"""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDay, TruncMonth, TruncWeek
from django.utils import timezone

from billing.models import LLMCallEvent
from reporting.selectors import UsageSummary, _summary

_TRUNC = {"day": TruncDay, "week": TruncWeek, "month": TruncMonth}
_OK = Q(status=LLMCallEvent.Status.OK)


def _aggregates() -> dict:
    return {
        # First: later, "cost" names the aggregate below, not the column.
        "tool_followup_cost": Sum("cost", filter=_OK & Q(purpose=LLMCallEvent.Purpose.TOOL_FOLLOWUP)),
        "summary_cost": Sum("cost", filter=_OK & Q(purpose=LLMCallEvent.Purpose.SUMMARY)),
        "calls": Count("id", filter=_OK),
        "failed_calls": Count("id", filter=Q(status=LLMCallEvent.Status.ERROR)),
        "input_tokens": Sum("input_tokens", filter=_OK),
        "output_tokens": Sum("output_tokens", filter=_OK),
        "cost": Sum("cost", filter=_OK),
        "unique_users": Count("user", distinct=True, filter=_OK),
        "shadow_refusals": Count("id", filter=Q(shadow_refusal=True)),
        "summary_fallbacks": Count("id", filter=Q(used_fallback=True)),
    }


def event_scan(
    *, start: date, end: date, bucket: str | None, user_id: int | None = None, model: str | None = None
) -> UsageSummary:
    """usage_summary's answer, computed from LLMCallEvent rows in REPORT_TIME_ZONE."""
    tz = ZoneInfo(settings.REPORT_TIME_ZONE)
    since = datetime.combine(start, time.min, tzinfo=tz)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=tz)
    events = LLMCallEvent.objects.filter(created_at__gte=since, created_at__lt=until)
    if user_id is not None:
        events = events.filter(user_id=user_id)
    if model is not None:
        events = events.filter(model=model)
    totals = events.aggregate(**_aggregates())
    rows = []
    if bucket is not None:
        grouped = (
            events.annotate(bucket_start=_TRUNC[bucket]("created_at", tzinfo=tz))
            .values("bucket_start")
            .annotate(**_aggregates())
            .order_by("bucket_start")
        )
        rows = [{**group, "date": timezone.localtime(group["bucket_start"], tz).date()} for group in grouped]
    return _summary(start=start, end=end, bucket=bucket, totals=totals, rows=rows)
