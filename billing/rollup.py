"""The daily usage rollup: rows kept by the charging transaction, a rebuild from events, and its SQL."""

import logging
from datetime import date, datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing.models import LLMCallEvent, UsageDaily, UsageRollupState

logger = logging.getLogger(__name__)

ROLLUP = UsageDaily._meta.db_table
EVENT = LLMCallEvent._meta.db_table
STATE = UsageRollupState._meta.db_table
COLUMNS = "day, user_id, model, calls, failed_calls, input_tokens, output_tokens, cost, shadow_refusals"
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
_UPSERT_SQL = f"INSERT INTO {ROLLUP} ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) {UPSERT_TAIL}"  # noqa: S608


def enabled() -> bool:
    """The rollup is kept on PostgreSQL only; the embedded SQLite default scans events, which is fine there."""
    return connection.vendor == "postgresql"


def local_day(when: datetime) -> date:
    """The day an instant falls on in REPORT_TIME_ZONE (the rollup's key, and the report's cut)."""
    return timezone.localtime(when, ZoneInfo(settings.REPORT_TIME_ZONE)).date()


def add_event(event: LLMCallEvent) -> None:
    """Count one recorded event in its rollup row; the caller holds the transaction that wrote it."""
    if not enabled():
        return
    ok = event.status == LLMCallEvent.Status.OK
    with connection.cursor() as cursor:
        cursor.execute(
            _UPSERT_SQL,
            [
                local_day(event.created_at),
                event.user_id,
                event.model,
                1 if ok else 0,
                0 if ok else 1,
                event.input_tokens if ok else 0,
                event.output_tokens if ok else 0,
                event.cost if ok else 0,
                1 if event.shadow_refusal else 0,
            ],
        )


def rollup_is_current() -> bool:
    """Whether readers may use the rollup: rebuilt for the REPORT_TIME_ZONE in force now."""
    if not enabled():
        return False
    return UsageRollupState.objects.filter(time_zone=settings.REPORT_TIME_ZONE).exists()


def rebuild_usage_rollup() -> int:
    """Recount every (day, user, model) row from the events in REPORT_TIME_ZONE; safe alongside charges.

    The EXCLUSIVE lock waits for charges that already wrote a rollup row and holds new ones back
    until the rebuild commits; the recount's snapshot is taken after the lock, so every event is
    counted exactly once, either by the recount or by its own charge afterwards.
    """
    if not enabled():
        raise RuntimeError("The usage rollup is kept on PostgreSQL only.")
    tz = settings.REPORT_TIME_ZONE
    ZoneInfo(tz)  # a bad zone fails here, before anything is locked
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {ROLLUP} IN EXCLUSIVE MODE")
        cursor.execute(f"DELETE FROM {ROLLUP}")  # noqa: S608
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
        UsageRollupState.objects.all().delete()
        UsageRollupState.objects.create(time_zone=tz)
    logger.info("usage rollup rebuilt", extra={"rows": rows, "time_zone": tz})
    return rows
