"""Template filters for moments people read: an expiry chosen as a day reads as that day."""

from datetime import datetime, time, timedelta

from django import template
from django.utils import timezone
from django.utils.dateformat import format as format_date

from billing.periods import zone

register = template.Library()


@register.filter
def expiry(instant: datetime | None) -> str:
    """`{{ key.expires_at|expiry }}`: "end of 2026-12-10" for an instant at the start of a local day.

    A key "valid until" a day, or a lot that expires with its allowance's period, ends at the local
    midnight after it (REPORT_TIME_ZONE, the periods' zone); read as that midnight it looked like a
    day more than was chosen. Any other instant is shown as it is, with its zone; None is "never".
    """
    if instant is None:
        return "never"
    local = timezone.localtime(instant, zone())
    if local.time() == time.min:
        day = (local - timedelta(days=1)).date()
        return f"end of {day:%Y-%m-%d}" + (
            "" if local.utcoffset() == timedelta(0) else f" ({local.tzname()})"
        )
    return format_date(timezone.localtime(instant), "Y-m-d H:i e")
