"""The usage rollups: rows kept by the charging transaction, a rebuild from events, and their SQL."""

import logging
from datetime import date, datetime
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
USER_MONTH = UsageUserMonth._meta.db_table
USER_WEEK = UsageUserWeek._meta.db_table
EVENT = LLMCallEvent._meta.db_table
STATE = UsageRollupState._meta.db_table
# Every table a charge writes a rollup row in, in the order it writes them (the rebuild locks them so).
TABLES = (ROLLUP, USER_MONTH, USER_WEEK, DAY_SHARD)
# UsageDayShard.shard = user_id % SHARDS. Changing it needs a rebuild; readers sum over every shard.
SHARDS = 16
COLUMNS = "day, user_id, model, calls, failed_calls, input_tokens, output_tokens, cost, shadow_refusals"
DAY_SHARD_COLUMNS = (
    "day, shard, calls, failed_calls, input_tokens, output_tokens, cost, shadow_refusals, users"
)
# Add one event's figures to its (day, user, model) row; the row lock it takes is the only contention.
UPSERT_TAIL = (
    "ON CONFLICT (day, user_id, model) DO UPDATE SET "
    f"calls = {ROLLUP}.calls + EXCLUDED.calls, "
    f"failed_calls = {ROLLUP}.failed_calls + EXCLUDED.failed_calls, "
    f"input_tokens = {ROLLUP}.input_tokens + EXCLUDED.input_tokens, "
    f"output_tokens = {ROLLUP}.output_tokens + EXCLUDED.output_tokens, "
    f"cost = {ROLLUP}.cost + EXCLUDED.cost, "
    f"shadow_refusals = {ROLLUP}.shadow_refusals + EXCLUDED.shadow_refusals"
)


def _rollup_ctes(*, ok: bool) -> str:
    """The CTEs that count one event (parameters: day, user_id, model, tokens, cost, shadow_count).

    r: its (day, user, model) row. um: on the first successful call of (day, user, model), set the
    day's bit in the user's month bitmap; the ON CONFLICT ... WHERE re-checks the bit on the latest
    row version under the row lock, so exactly one charge per user and local day gets a row back.
    uw: that charge also sets the day's bit in the user's week bitmap. ds: the figures go to the
    (day, user shard) row, plus one user when um returned a row. ds reads r and um, so the row other
    users share is locked after the user's own rows; only uw may run after it, and uw's row is
    written by nothing but this user's successful calls, which all hold the user's wallet first.
    """
    calls, failed = ("1", "0") if ok else ("0", "1")
    return (
        f"r AS (INSERT INTO {ROLLUP} ({COLUMNS}) VALUES (%(day)s, %(user_id)s, %(model)s, {calls}, {failed},"  # noqa: S608 - our tables
        f" %(input_tokens)s, %(output_tokens)s, %(cost)s, %(shadow_count)s) {UPSERT_TAIL} RETURNING calls"
        "), k AS ("
        " SELECT d - (extract(day FROM d)::int - 1) AS month, 1 << (extract(day FROM d)::int - 1) AS month_bit,"
        " d - (extract(isodow FROM d)::int - 1) AS week,"
        " (1 << (extract(isodow FROM d)::int - 1))::smallint AS week_bit"
        " FROM (SELECT %(day)s::date AS d) AS local_day"
        "), um AS ("
        f" INSERT INTO {USER_MONTH} AS t (month, user_id, days) SELECT k.month, %(user_id)s, k.month_bit"
        f" FROM k, r WHERE {calls} = 1 AND r.calls = 1"
        " ON CONFLICT (month, user_id) DO UPDATE SET days = t.days | EXCLUDED.days"
        " WHERE (t.days & EXCLUDED.days) = 0 RETURNING 1"
        "), uw AS ("
        f" INSERT INTO {USER_WEEK} AS t (week, user_id, days) SELECT k.week, %(user_id)s, k.week_bit FROM k, um"
        " ON CONFLICT (week, user_id) DO UPDATE SET days = t.days | EXCLUDED.days"
        "), ds AS ("
        f" INSERT INTO {DAY_SHARD} AS t ({DAY_SHARD_COLUMNS}) SELECT %(day)s, mod(%(user_id)s, {SHARDS}),"
        f" {calls}, {failed}, %(input_tokens)s, %(output_tokens)s, %(cost)s, %(shadow_count)s,"
        # FROM r: the shared row is locked after the user's row even when um never reads r (a
        # failed call, where um's WHERE is constant false and r would run after this insert).
        " (SELECT count(*) FROM um) FROM r"
        " ON CONFLICT (day, shard) DO UPDATE SET calls = t.calls + EXCLUDED.calls,"
        " failed_calls = t.failed_calls + EXCLUDED.failed_calls,"
        " input_tokens = t.input_tokens + EXCLUDED.input_tokens,"
        " output_tokens = t.output_tokens + EXCLUDED.output_tokens, cost = t.cost + EXCLUDED.cost,"
        " shadow_refusals = t.shadow_refusals + EXCLUDED.shadow_refusals, users = t.users + EXCLUDED.users"
        ")"
    )


# The rollup part of billing.services' one-statement debit (a successful call, its CTEs after the ledger row).
DEBIT_CTES = _rollup_ctes(ok=True)
# The same rows for an event recorded by the ORM: a failed call, or a successful one that cost nothing.
_EVENT_SQL = {ok: f"WITH {_rollup_ctes(ok=ok)} SELECT 1" for ok in (True, False)}


def enabled() -> bool:
    """The rollup is kept on PostgreSQL only; the embedded SQLite default scans events, which is fine there."""
    return connection.vendor == "postgresql"


def local_day(when: datetime) -> date:
    """The day an instant falls on in REPORT_TIME_ZONE (the rollup's key, and the report's cut)."""
    return timezone.localtime(when, ZoneInfo(settings.REPORT_TIME_ZONE)).date()


def add_event(event: LLMCallEvent) -> None:
    """Count one recorded event in the rollups; the caller holds the transaction that wrote it.

    Call it after closing the hold and moving the wallet: the one-statement debit locks the hold,
    the wallet, the user's rollup rows, then the (day, shard) row other users share. Taking the
    shard row before the wallet would let this transaction and a debit of the same user, each
    holding one, wait for each other (with a third user of the shard queued between them).
    """
    if not enabled():
        return
    ok = event.status == LLMCallEvent.Status.OK
    with connection.cursor() as cursor:
        cursor.execute(
            _EVENT_SQL[ok],
            {
                "day": local_day(event.created_at),
                "user_id": event.user_id,
                "model": event.model,
                "input_tokens": event.input_tokens if ok else 0,
                "output_tokens": event.output_tokens if ok else 0,
                "cost": event.cost if ok else 0,
                "shadow_count": 1 if event.shadow_refusal else 0,
            },
        )


def rollup_is_current() -> bool:
    """Whether readers may use the rollup: rebuilt for the REPORT_TIME_ZONE in force now."""
    if not enabled():
        return False
    return UsageRollupState.objects.filter(time_zone=settings.REPORT_TIME_ZONE).exists()


# The tables built from the recounted (day, user, model) rows, each in key order so that a date
# range's rows sit together on disk as well as in the index.
_DERIVE_SQL = (
    f"INSERT INTO {DAY_SHARD} ({DAY_SHARD_COLUMNS}) "  # noqa: S608
    f"SELECT day, mod(user_id, {SHARDS}), sum(calls), sum(failed_calls), sum(input_tokens), "
    "sum(output_tokens), sum(cost), sum(shadow_refusals), count(DISTINCT user_id) FILTER (WHERE calls > 0) "
    f"FROM {ROLLUP} GROUP BY 1, 2 ORDER BY 1, 2",
    f"INSERT INTO {USER_MONTH} (month, user_id, days) "  # noqa: S608
    "SELECT day - (extract(day FROM day)::int - 1), user_id, bit_or(1 << (extract(day FROM day)::int - 1)) "
    f"FROM {ROLLUP} WHERE calls > 0 GROUP BY 1, 2 ORDER BY 1, 2",
    f"INSERT INTO {USER_WEEK} (week, user_id, days) "  # noqa: S608
    "SELECT day - (extract(isodow FROM day)::int - 1), user_id, "
    "bit_or((1 << (extract(isodow FROM day)::int - 1))::smallint) "
    f"FROM {ROLLUP} WHERE calls > 0 GROUP BY 1, 2 ORDER BY 1, 2",
)


def rebuild_usage_rollup() -> int:
    """Recount every rollup table from the events in REPORT_TIME_ZONE; safe alongside charges.

    The EXCLUSIVE locks wait for charges that already wrote a rollup row and hold new ones back
    until the rebuild commits; the recount's snapshot is taken after the locks, so every event is
    counted exactly once, either by the recount or by its own charge afterwards. The tables are
    locked in the order a charge writes them, so a charge queues on the first and never holds a
    later one the rebuild waits for. Returns the number of (day, user, model) rows.
    """
    if not enabled():
        raise RuntimeError("The usage rollup is kept on PostgreSQL only.")
    tz = settings.REPORT_TIME_ZONE
    ZoneInfo(tz)  # a bad zone fails here, before anything is locked
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {', '.join(TABLES)} IN EXCLUSIVE MODE")
        for table in TABLES:
            cursor.execute(f"DELETE FROM {table}")  # noqa: S608
        cursor.execute(
            f"INSERT INTO {ROLLUP} ({COLUMNS}) "  # noqa: S608
            "SELECT (created_at AT TIME ZONE %s)::date, user_id, model, "
            "count(*) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE status = 'error'), "
            "coalesce(sum(input_tokens) FILTER (WHERE status = 'ok'), 0), "
            "coalesce(sum(output_tokens) FILTER (WHERE status = 'ok'), 0), "
            "coalesce(sum(cost) FILTER (WHERE status = 'ok'), 0), "
            "count(*) FILTER (WHERE shadow_refusal) "
            # In key order, so a date range's rows sit together on disk as well as in the index.
            f"FROM {EVENT} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            [tz],
        )
        rows = cursor.rowcount
        # The day-shard and bitmap tables follow from the recounted rows, much smaller than the events.
        for statement in _DERIVE_SQL:
            cursor.execute(statement)
        UsageRollupState.objects.all().delete()
        UsageRollupState.objects.create(time_zone=tz)
    logger.info("usage rollup rebuilt", extra={"rows": rows, "time_zone": tz})
    return rows
