"""The usage rollups: their layout, the rows a recorded call adds to them, and the rebuild from events.

Every recorded model call (billing.services.charging) updates the rollups in its own statement, so
they are current from the first call on; readers (reporting.selectors) never scan the events. The
event scan lives only in `rebuild_usage_rollup` (a backfill, and after REPORT_TIME_ZONE changes).

Tables, all keyed by the local day in REPORT_TIME_ZONE:
- UsageDaily (day, user, model): the figures, for summaries filtered by user or model;
- UsageDayShard (day, user_id % SHARDS): the figures plus the shard's active users, for unfiltered ones;
- UsageUserMonth / UsageUserWeek (period, user): a bitmap of the days the user had a successful call,
  so that unique users over any range are counted without scanning (layout: `Bitmap` below).
"""

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing.models import (
    LLMCallEvent,
    UsageDaily,
    UsageDayShard,
    UsageRollupState,
    UsageUserMonth,
    UsageUserWeek,
)

logger = logging.getLogger(__name__)

ROLLUP = UsageDaily._meta.db_table
DAY_SHARD = UsageDayShard._meta.db_table
EVENT = LLMCallEvent._meta.db_table
# UsageDayShard.shard = user_id % SHARDS. Changing it needs a rebuild; readers sum over every shard.
SHARDS = 16


@dataclass(frozen=True)
class Bitmap:
    """A user's active days in one period: bit n is the period's day n+1 (the 1st of a month, a Monday)."""

    table: str
    column: str  # the period's first day
    field: str  # the EXTRACT field giving a day's 1-based place in its period
    sql_type: str

    def start(self, day: date) -> date:
        return day.replace(day=1) if self.field == "day" else day - timedelta(days=day.weekday())

    def start_sql(self, day: str) -> str:
        return f"({day} - (extract({self.field} FROM {day})::int - 1))"

    def bit_sql(self, day: str) -> str:
        return f"(1 << (extract({self.field} FROM {day})::int - 1))::{self.sql_type}"

    def mask(self, *, period: date, start: date, end: date) -> int:
        """The bits of the days of `period` that lie in [start, end]."""
        bits, day = 0, max(start, period)
        while day <= end and self.start(day) == period:
            bits |= 1 << (day - period).days
            day += timedelta(days=1)
        return bits

    def active_users_sql(self, *, start: date, end: date) -> tuple[str, dict]:
        """(period, user_id) of every user with an active day in [start, end]: one row per user and period.

        The first and last periods the range touches are masked to its days; the periods in between lie
        wholly inside it, so any bit counts there.
        """
        first, last = self.start(start), self.start(end)
        params = {
            "first": first,
            "first_mask": self.mask(period=first, start=start, end=end),
            "last": last,
            "last_mask": self.mask(period=last, start=start, end=end),
        }
        column = self.column
        sql = (
            f"SELECT {column} AS period, user_id FROM {self.table} "  # noqa: S608 - our table
            f"WHERE {column} BETWEEN %(first)s AND %(last)s AND (days & CASE {column} "
            "WHEN %(first)s THEN %(first_mask)s WHEN %(last)s THEN %(last_mask)s ELSE -1 END) <> 0"
        )
        return sql, params


BITMAPS = {
    "month": Bitmap(UsageUserMonth._meta.db_table, "month", "day", "int"),
    "week": Bitmap(UsageUserWeek._meta.db_table, "week", "isodow", "smallint"),
}
_MONTH, _WEEK = BITMAPS["month"], BITMAPS["week"]

# The rollups' upkeep for one recorded call, as CTEs of billing.services.charging's statement.
# Parameters: day, user_id, model, calls and failed_calls (1/0 or 0/1), input_tokens, output_tokens,
# cost (the figures count successful calls only: zeros for a failed one), shadow_count, fallback_count,
# followup_cost and summary_cost (the call's cost again when it was made for that purpose, else 0).
#   r:  the (day, user, model) row.
#   um: on the user's first successful call of the local day, set the day's bit in the month bitmap;
#       the ON CONFLICT ... WHERE re-checks the bit on the latest row version under the row lock, so
#       exactly one call per user and local day gets a row back.
#   uw: that call also sets the day's bit in the week bitmap.
#   ds: the figures go to the (day, user shard) row, plus one user when um returned a row.
# Lock order: ds reads r and um, so the row other users share is locked after the user's own rows;
# only uw may run after it, and uw's row is written by nothing but this user's successful calls,
# which all hold the user's wallet first.
_FIGURES = (
    "calls, failed_calls, input_tokens, output_tokens, cost, shadow_refusals, summary_fallbacks,"
    " tool_followup_cost, summary_cost"
)
CALL_CTES = (
    f"r AS (INSERT INTO {ROLLUP} (day, user_id, model, {_FIGURES}) VALUES (%(day)s, %(user_id)s, %(model)s,"  # noqa: S608
    " %(calls)s, %(failed_calls)s, %(input_tokens)s, %(output_tokens)s, %(cost)s, %(shadow_count)s,"
    " %(fallback_count)s, %(followup_cost)s, %(summary_cost)s) ON CONFLICT (day, user_id, model) DO UPDATE SET"
    f" calls = {ROLLUP}.calls + EXCLUDED.calls, failed_calls = {ROLLUP}.failed_calls + EXCLUDED.failed_calls,"
    f" input_tokens = {ROLLUP}.input_tokens + EXCLUDED.input_tokens,"
    f" output_tokens = {ROLLUP}.output_tokens + EXCLUDED.output_tokens, cost = {ROLLUP}.cost + EXCLUDED.cost,"
    f" shadow_refusals = {ROLLUP}.shadow_refusals + EXCLUDED.shadow_refusals,"
    f" summary_fallbacks = {ROLLUP}.summary_fallbacks + EXCLUDED.summary_fallbacks,"
    f" tool_followup_cost = {ROLLUP}.tool_followup_cost + EXCLUDED.tool_followup_cost,"
    f" summary_cost = {ROLLUP}.summary_cost + EXCLUDED.summary_cost RETURNING calls"
    "), um AS ("
    f" INSERT INTO {_MONTH.table} AS t (month, user_id, days)"
    f" SELECT {_MONTH.start_sql('%(day)s::date')}, %(user_id)s, {_MONTH.bit_sql('%(day)s::date')}"
    " FROM r WHERE %(calls)s = 1 AND r.calls = 1"
    " ON CONFLICT (month, user_id) DO UPDATE SET days = t.days | EXCLUDED.days"
    " WHERE (t.days & EXCLUDED.days) = 0 RETURNING 1"
    "), uw AS ("
    f" INSERT INTO {_WEEK.table} AS t (week, user_id, days)"
    f" SELECT {_WEEK.start_sql('%(day)s::date')}, %(user_id)s, {_WEEK.bit_sql('%(day)s::date')} FROM um"
    " ON CONFLICT (week, user_id) DO UPDATE SET days = t.days | EXCLUDED.days"
    "), ds AS ("
    f" INSERT INTO {DAY_SHARD} AS t (day, shard, {_FIGURES}, users)"
    f" SELECT %(day)s, mod(%(user_id)s, {SHARDS}), %(calls)s, %(failed_calls)s, %(input_tokens)s,"
    " %(output_tokens)s, %(cost)s, %(shadow_count)s, %(fallback_count)s, %(followup_cost)s, %(summary_cost)s,"
    " (SELECT count(*) FROM um)"
    # FROM r: the shared row is locked after the user's row even when um never reads r (a failed
    # call, where um's WHERE is false and r would otherwise run after this insert).
    " FROM r ON CONFLICT (day, shard) DO UPDATE SET calls = t.calls + EXCLUDED.calls,"
    " failed_calls = t.failed_calls + EXCLUDED.failed_calls,"
    " input_tokens = t.input_tokens + EXCLUDED.input_tokens,"
    " output_tokens = t.output_tokens + EXCLUDED.output_tokens, cost = t.cost + EXCLUDED.cost,"
    " shadow_refusals = t.shadow_refusals + EXCLUDED.shadow_refusals,"
    " summary_fallbacks = t.summary_fallbacks + EXCLUDED.summary_fallbacks,"
    " tool_followup_cost = t.tool_followup_cost + EXCLUDED.tool_followup_cost,"
    " summary_cost = t.summary_cost + EXCLUDED.summary_cost, users = t.users + EXCLUDED.users"
    ")"
)
# Every table a call writes a rollup row in, in the order it writes them (the rebuild locks them so).
TABLES = (ROLLUP, _MONTH.table, _WEEK.table, DAY_SHARD)


def call_params(event: LLMCallEvent) -> dict:
    """CALL_CTES' parameters for one event (user_id and model are the event's, named alike)."""
    ok = event.status == LLMCallEvent.Status.OK
    return {
        "day": local_day(event.created_at),
        "calls": 1 if ok else 0,
        "failed_calls": 0 if ok else 1,
        "input_tokens": event.input_tokens if ok else 0,
        "output_tokens": event.output_tokens if ok else 0,
        "cost": event.cost if ok else 0,
        "shadow_count": 1 if event.shadow_refusal else 0,
        "fallback_count": 1 if event.used_fallback else 0,
        "followup_cost": event.cost if ok and event.purpose == LLMCallEvent.Purpose.TOOL_FOLLOWUP else 0,
        "summary_cost": event.cost if ok and event.purpose == LLMCallEvent.Purpose.SUMMARY else 0,
    }


def local_day(when: datetime) -> date:
    """The day an instant falls on in REPORT_TIME_ZONE (the rollup's key, and the report's cut)."""
    return timezone.localtime(when, ZoneInfo(settings.REPORT_TIME_ZONE)).date()


def built_for_time_zone() -> str | None:
    """The REPORT_TIME_ZONE the rollups' days were last cut in (None before any rebuild)."""
    return UsageRollupState.objects.values_list("time_zone", flat=True).first()


# The tables derived from the recounted (day, user, model) rows, each in key order so that a date
# range's rows sit together on disk as well as in the index.
_DERIVE_SQL = (
    f"INSERT INTO {DAY_SHARD} (day, shard, {_FIGURES}, users) "  # noqa: S608
    f"SELECT day, mod(user_id, {SHARDS}), sum(calls), sum(failed_calls), sum(input_tokens), "
    "sum(output_tokens), sum(cost), sum(shadow_refusals), sum(summary_fallbacks), sum(tool_followup_cost), "
    "sum(summary_cost), "
    "count(DISTINCT user_id) FILTER (WHERE calls > 0) "
    f"FROM {ROLLUP} GROUP BY 1, 2 ORDER BY 1, 2",
    *(
        f"INSERT INTO {b.table} ({b.column}, user_id, days) "  # noqa: S608
        f"SELECT {b.start_sql('day')}, user_id, bit_or({b.bit_sql('day')}) "
        f"FROM {ROLLUP} WHERE calls > 0 GROUP BY 1, 2 ORDER BY 1, 2"
        for b in (_MONTH, _WEEK)
    ),
)


def rebuild_usage_rollup() -> int:
    """Recount every rollup table from the events in REPORT_TIME_ZONE; safe alongside charges.

    The EXCLUSIVE locks wait for calls that already wrote a rollup row and hold new ones back until
    the rebuild commits; the recount's snapshot is taken after the locks, so every event is counted
    exactly once, either by the recount or by its own call afterwards. The tables are locked in the
    order a call writes them, so a call queues on the first and never holds a later one the rebuild
    waits for. Returns the number of (day, user, model) rows.
    """
    tz = settings.REPORT_TIME_ZONE
    ZoneInfo(tz)  # a bad zone fails here, before anything is locked
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {', '.join(TABLES)} IN EXCLUSIVE MODE")
        for table in TABLES:
            cursor.execute(f"DELETE FROM {table}")  # noqa: S608
        cursor.execute(
            f"INSERT INTO {ROLLUP} (day, user_id, model, {_FIGURES}) "  # noqa: S608
            "SELECT (created_at AT TIME ZONE %s)::date, user_id, model, "
            "count(*) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE status = 'error'), "
            "coalesce(sum(input_tokens) FILTER (WHERE status = 'ok'), 0), "
            "coalesce(sum(output_tokens) FILTER (WHERE status = 'ok'), 0), "
            "coalesce(sum(cost) FILTER (WHERE status = 'ok'), 0), "
            "count(*) FILTER (WHERE shadow_refusal), count(*) FILTER (WHERE used_fallback), "
            "coalesce(sum(cost) FILTER (WHERE status = 'ok' AND purpose = 'tool_followup'), 0), "
            "coalesce(sum(cost) FILTER (WHERE status = 'ok' AND purpose = 'summary'), 0) "
            f"FROM {EVENT} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            [tz],
        )
        rows = cursor.rowcount
        for statement in _DERIVE_SQL:
            cursor.execute(statement)
        UsageRollupState.objects.all().delete()
        UsageRollupState.objects.create(time_zone=tz)
    logger.info("usage rollup rebuilt", extra={"rows": rows, "time_zone": tz})
    return rows
