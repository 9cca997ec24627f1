"""The usage rollups: their layout, the rows a recorded call adds to them, and the rebuild from events.

Every recorded model call (billing.services.charging) updates the rollups in its own statement, so
they are current from the first call on; readers (billing.usage_selectors) never scan the events. The
event scan lives only in `rebuild_usage_rollup` (a backfill, and after REPORT_TIME_ZONE changes).

Tables, all keyed by the local day in REPORT_TIME_ZONE, their figures declared once
(billing.models.USAGE_FIGURES) and every statement below built from that declaration:
- UsageDaily (day, user, model): the figures, for summaries filtered by user or model;
- UsageKeyDaily (day, API key's limit, model): the figures of the calls made with a key, for its usage;
- UsageDayShard (day, user_id mod SHARDS): the figures plus the shard's active users, for unfiltered ones;
- UsageUserMonth / UsageUserWeek (period, user): a bitmap of the days the user had a successful call,
  so that unique users over any range are counted without scanning (layout: `Bitmap` below).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from django.db import connection, transaction

from billing.models import (
    USAGE_FIGURES,
    LLMCallEvent,
    UsageDaily,
    UsageDayShard,
    UsageKeyDaily,
    UsageRollupState,
    UsageUserMonth,
    UsageUserWeek,
)
from billing.periods import local_today, zone

logger = logging.getLogger(__name__)

DAILY = UsageDaily._meta.db_table
DAY_SHARD = UsageDayShard._meta.db_table
KEY_DAILY = UsageKeyDaily._meta.db_table
EVENT = LLMCallEvent._meta.db_table
# UsageDayShard.shard = user_id mod SHARDS. Changing it needs a rebuild; readers sum over every shard.
SHARDS = 16

# The figures' columns, in USAGE_FIGURES order, as every statement over the rollups lists them.
FIGURE_COLUMNS = ", ".join(figure.name for figure in USAGE_FIGURES)


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
        sql = f"""
            SELECT {column} AS period, user_id
            FROM {self.table}
            WHERE {column} BETWEEN %(first)s AND %(last)s
                -- the range's days only, in the periods it starts and ends in
                AND (days & CASE {column}
                    WHEN %(first)s THEN %(first_mask)s
                    WHEN %(last)s THEN %(last_mask)s
                    ELSE -1
                END) <> 0
        """  # noqa: S608 - our table
        return sql, params


BITMAPS = {
    "month": Bitmap(UsageUserMonth._meta.db_table, "month", "day", "int"),
    "week": Bitmap(UsageUserWeek._meta.db_table, "week", "isodow", "smallint"),
}
_MONTH, _WEEK = BITMAPS["month"], BITMAPS["week"]


def _call_values() -> str:
    """The call's own value of each figure: its parameters (call_params), in column order."""
    return ", ".join(f"%({figure.param})s" for figure in USAGE_FIGURES)


def _added_to(row: str) -> str:
    """An upsert's SET list: each figure of the existing row (`row`) plus the call's (EXCLUDED)."""
    return ",\n            ".join(
        f"{figure.name} = {row}.{figure.name} + EXCLUDED.{figure.name}" for figure in USAGE_FIGURES
    )


# The rollups' upkeep for one recorded call, as CTEs of billing.services.charging's statement.
# Parameters: day, user_id, model, spend_limit_id (the key's limit, or null), and each figure's `param` (USAGE_FIGURES) with the call's own
# value of it (call_params: zeros for the figures a failed call does not count).
# Lock order: shard_usage reads daily_usage and new_active_day, so the row other users share is
# locked after the user's own rows; only week_active_day may run after it, and its row is written by
# nothing but this user's successful calls, which all hold the user's wallet first.
CALL_CTES = f"""
    -- The (day, user, model) row: inserted, or the call's figures added to it.
    daily_usage AS (
        INSERT INTO {DAILY} AS existing (day, user_id, model, {FIGURE_COLUMNS})
        VALUES (%(day)s, %(user_id)s, %(model)s, {_call_values()})
        ON CONFLICT (day, user_id, model) DO UPDATE SET
            {_added_to("existing")}
        RETURNING calls
    ),
    -- A call made with an API key: the (day, key, model) row too. Only that key's calls write it,
    -- and each holds the user's wallet first.
    key_usage AS (
        INSERT INTO {KEY_DAILY} AS existing (day, spend_limit_id, model, {FIGURE_COLUMNS})
        SELECT %(day)s, %(spend_limit_id)s, %(model)s, {_call_values()}
        WHERE %(spend_limit_id)s::bigint IS NOT NULL
        ON CONFLICT (spend_limit_id, day, model) DO UPDATE SET
            {_added_to("existing")}
    ),
    -- On the user's first successful call of the local day, the day's bit set in the month bitmap.
    -- The ON CONFLICT ... WHERE re-checks the bit on the latest row version under the row lock, so
    -- exactly one call per user and local day gets a row back.
    new_active_day AS (
        INSERT INTO {_MONTH.table} AS existing (month, user_id, days)
        SELECT {_MONTH.start_sql("%(day)s::date")}, %(user_id)s, {_MONTH.bit_sql("%(day)s::date")}
        FROM daily_usage
        WHERE %(calls)s = 1 AND daily_usage.calls = 1
        ON CONFLICT (month, user_id) DO UPDATE SET days = existing.days | EXCLUDED.days
        WHERE (existing.days & EXCLUDED.days) = 0
        RETURNING 1
    ),
    -- That call also sets the day's bit in the week bitmap.
    week_active_day AS (
        INSERT INTO {_WEEK.table} AS existing (week, user_id, days)
        SELECT {_WEEK.start_sql("%(day)s::date")}, %(user_id)s, {_WEEK.bit_sql("%(day)s::date")}
        FROM new_active_day
        ON CONFLICT (week, user_id) DO UPDATE SET days = existing.days | EXCLUDED.days
    ),
    -- The figures go to the (day, user shard) row, plus one user when new_active_day returned a row.
    -- FROM daily_usage: the shared row is locked after the user's row even when new_active_day
    -- never reads daily_usage (a failed call, where its WHERE is false and daily_usage would
    -- otherwise run after this insert).
    shard_usage AS (
        INSERT INTO {DAY_SHARD} AS existing (day, shard, {FIGURE_COLUMNS}, users)
        SELECT %(day)s, mod(%(user_id)s, {SHARDS}), {_call_values()},
            (SELECT count(*) FROM new_active_day)
        FROM daily_usage
        ON CONFLICT (day, shard) DO UPDATE SET
            {_added_to("existing")},
            users = existing.users + EXCLUDED.users
    )"""  # noqa: S608 - every name is one of our tables
# Every table a call writes a rollup row in, in the order it writes them (the rebuild locks them so).
TABLES = (DAILY, KEY_DAILY, _MONTH.table, _WEEK.table, DAY_SHARD)


def call_params(event: LLMCallEvent) -> dict:
    """CALL_CTES' parameters for one event (user_id and model are the event's, named alike)."""
    return {
        "day": local_today(event.created_at),  # the rollup's key, and the report's cut
        **{figure.param: figure.of_call(event) for figure in USAGE_FIGURES},
    }


def built_for_time_zone() -> str | None:
    """The REPORT_TIME_ZONE the rollups' days were last cut in (None before any rebuild)."""
    return UsageRollupState.objects.values_list("time_zone", flat=True).first()


# The rebuild, step by step: lock every rollup table in the order a call writes them, empty them,
# recount the (day, user, model) and (day, key, model) rows from the events, then derive the others
# from the first.
_LOCK_SQL = f"""
    LOCK TABLE {", ".join(TABLES)}
    IN EXCLUSIVE MODE
"""
_EMPTY_SQL = tuple(f"DELETE FROM {table}" for table in TABLES)  # noqa: S608 - our tables
_RECOUNTS = ", ".join(figure.recount for figure in USAGE_FIGURES)
# The (day, user, model) rows from the events: each event's local day (the zone is the parameter),
# user and model, and each figure's recount.
_RECOUNT_SQL = f"""
    INSERT INTO {DAILY} (day, user_id, model, {FIGURE_COLUMNS})
    SELECT (created_at AT TIME ZONE %s)::date, user_id, model, {_RECOUNTS}
    FROM {EVENT}
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
"""  # noqa: S608 - our tables
# The (day, key, model) rows, the same way from the calls made with a key, in the index's order.
_KEY_RECOUNT_SQL = f"""
    INSERT INTO {KEY_DAILY} (day, spend_limit_id, model, {FIGURE_COLUMNS})
    SELECT (created_at AT TIME ZONE %s)::date, spend_limit_id, model, {_RECOUNTS}
    FROM {EVENT}
    WHERE spend_limit_id IS NOT NULL
    GROUP BY 2, 1, 3
    ORDER BY 2, 1, 3
"""  # noqa: S608 - our tables
# The tables derived from the recounted (day, user, model) rows, each in key order so that a date
# range's rows sit together on disk as well as in the index.
_DERIVE_SQL = (
    f"""
    INSERT INTO {DAY_SHARD} (day, shard, {FIGURE_COLUMNS}, users)
    -- the shard's figures are the sums of its users' rows; its users, those with a successful call
    SELECT day, mod(user_id, {SHARDS}),
        {", ".join(f"sum({figure.name})" for figure in USAGE_FIGURES)},
        count(DISTINCT user_id) FILTER (WHERE calls > 0)
    FROM {DAILY}
    GROUP BY 1, 2
    ORDER BY 1, 2
    """,  # noqa: S608 - our tables
    *(
        f"""
    INSERT INTO {b.table} ({b.column}, user_id, days)
    -- one bit per day with a successful call, or-ed together per period and user
    SELECT {b.start_sql("day")}, user_id, bit_or({b.bit_sql("day")})
    FROM {DAILY}
    WHERE calls > 0
    GROUP BY 1, 2
    ORDER BY 1, 2
    """  # noqa: S608 - our tables
        for b in (_MONTH, _WEEK)
    ),
)


def rebuild_usage_rollup(*, on_step: Callable[[], None] | None = None) -> int:
    """Recount every rollup table from the events in REPORT_TIME_ZONE; safe alongside charges.

    The EXCLUSIVE locks wait for calls that already wrote a rollup row and hold new ones back until
    the rebuild commits; the recount's snapshot is taken after the locks, so every event is counted
    exactly once, either by the recount or by its own call afterwards. The tables are locked in the
    order a call writes them, so a call queues on the first and never holds a later one the rebuild
    waits for. Returns the number of (day, user, model) rows. `on_step()` is called after each of its
    REBUILD_STEPS statements (a command's progress: the recount of the events is the long one).
    """
    tz = zone().key  # a bad zone fails here, before anything is locked
    step = on_step or (lambda: None)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_LOCK_SQL)
        step()
        for statement in _EMPTY_SQL:
            cursor.execute(statement)
            step()
        cursor.execute(_RECOUNT_SQL, [tz])
        rows = cursor.rowcount
        step()
        cursor.execute(_KEY_RECOUNT_SQL, [tz])
        step()
        for statement in _DERIVE_SQL:
            cursor.execute(statement)
            step()
        UsageRollupState.objects.all().delete()
        UsageRollupState.objects.create(time_zone=tz)
    logger.info("usage rollup rebuilt", extra={"rows": rows, "time_zone": tz})
    return rows


# The rebuild's statements, for a command's progress: the lock, the emptying, the two recounts, the derived rows.
REBUILD_STEPS = 1 + len(_EMPTY_SQL) + 2 + len(_DERIVE_SQL)
