"""Calendar periods in REPORT_TIME_ZONE: where the current day, week (from Monday) or month began, and when the next begins."""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

PERIODS = ("day", "week", "month")
# The first local day of a spend limit's current period, by its `period` (alias `spend_limit`), from
# period_params(); NULL for a limit that never resets. The statements that reserve and charge use it.
PERIOD_START_SQL = """CASE spend_limit.period
                WHEN 'day' THEN %(day_start)s::date
                WHEN 'week' THEN %(week_start)s::date
                WHEN 'month' THEN %(month_start)s::date
            END"""


def zone() -> ZoneInfo:
    """REPORT_TIME_ZONE, the one reader of it (read on every call, so an override takes effect at once)."""
    return ZoneInfo(settings.REPORT_TIME_ZONE)


def local_today(now: datetime | None = None) -> date:
    """The day `now` (default: this instant) falls on in REPORT_TIME_ZONE."""
    return timezone.localtime(now or timezone.now(), zone()).date()


def period_start(period: str | None, now: datetime | None = None) -> date | None:
    """The first local day of the current `period` (None for a limit that never resets)."""
    if period is None:
        return None
    return first_day(period, local_today(now))


def first_day(period: str, day: date) -> date:
    """The first day of the calendar `period` (day, week from Monday, month) that holds `day`."""
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")


def period_params(now: datetime | None = None) -> dict:
    """PERIOD_START_SQL's parameters at `now`."""
    now = now or timezone.now()
    return {f"{period}_start": period_start(period, now) for period in PERIODS}


def start_instant(day: date) -> datetime:
    """Local midnight at the start of `day`, as an aware datetime."""
    return datetime.combine(day, time.min, tzinfo=zone())


def next_reset(period: str | None, now: datetime | None = None) -> datetime | None:
    """When the current `period` ends and the next begins (None: never)."""
    start = period_start(period, now)
    if start is None:
        return None
    if period == "day":
        following = start + timedelta(days=1)
    elif period == "week":
        following = start + timedelta(days=7)
    else:
        following = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start_instant(following)
