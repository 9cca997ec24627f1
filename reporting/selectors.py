"""Reporting reads: usage aggregated in SQL by day/week/month, and the ledger rows for CSV export."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncMonth, TruncWeek
from django.utils import timezone

from billing.models import (
    CreditTransaction,
    UsageDaily,
    UsageDayShard,
)
from billing.rollup import BITMAPS
from core.money import to_decimal

BUCKETS = ("day", "week", "month")
DEFAULT_RANGE_DAYS = 30


@dataclass(frozen=True)
class UsageRow:
    """One bucket: successful calls, their tokens, cost and users; failed calls counted apart."""

    date: date
    calls: int
    failed_calls: int
    input_tokens: int
    output_tokens: int
    cost: Decimal
    unique_users: int
    shadow_refusals: int
    summary_fallbacks: int = 0
    tool_followup_cost: Decimal = Decimal(0)  # the part of `cost` that answered tool results
    summary_cost: Decimal = Decimal(0)  # the part of `cost` that summarized sessions

    @property
    def chat_cost(self) -> Decimal:
        """The part of `cost` that answered users directly (every call's cost but the two above)."""
        return self.cost - self.tool_followup_cost - self.summary_cost


@dataclass(frozen=True)
class UsageSummary:
    """Totals over [start, end] (local dates, inclusive) and one row per bucket that has events."""

    start: date
    end: date
    bucket: str | None
    total_calls: int
    failed_calls: int
    total_input_tokens: int
    total_output_tokens: int
    total_cost: Decimal
    unique_users: int
    shadow_refusals: int
    summary_fallbacks: int
    rows: list[UsageRow]
    total_tool_followup_cost: Decimal = Decimal(0)
    total_summary_cost: Decimal = Decimal(0)

    @property
    def total_chat_cost(self) -> Decimal:
        return self.total_cost - self.total_tool_followup_cost - self.total_summary_cost


def report_time_zone() -> ZoneInfo:
    """REPORT_TIME_ZONE, read on every call so a settings override takes effect at once."""
    return ZoneInfo(settings.REPORT_TIME_ZONE)


def default_range(today: date | None = None) -> tuple[date, date]:
    """The last 30 days ending today (both inclusive), today taken in REPORT_TIME_ZONE."""
    if today is None:
        today = timezone.localdate(timezone=report_time_zone())
    return today - timedelta(days=DEFAULT_RANGE_DAYS - 1), today


def _money(value) -> Decimal:
    return to_decimal(value if value is not None else 0)


_FIGURE_KEYS = (
    "calls",
    "failed_calls",
    "input_tokens",
    "output_tokens",
    "cost",
    "unique_users",
    "shadow_refusals",
    "summary_fallbacks",
    "tool_followup_cost",
    "summary_cost",
)
_MONEY_KEYS = ("cost", "tool_followup_cost", "summary_cost")


def _figures(values: dict) -> dict:
    """A bucket's or a range's figures by _FIGURE_KEYS, an empty aggregate (None) read as 0."""
    figures = {key: values.get(key) or 0 for key in _FIGURE_KEYS}
    for key in _MONEY_KEYS:
        figures[key] = _money(values.get(key))
    return figures


def _summary(*, start: date, end: date, bucket: str | None, totals: dict, rows: list[dict]) -> UsageSummary:
    """The summary from its totals and its bucket rows (each with `date`), as any of the readers got them."""
    t = _figures(totals)
    return UsageSummary(
        start=start,
        end=end,
        bucket=bucket,
        total_calls=t["calls"],
        failed_calls=t["failed_calls"],
        total_input_tokens=t["input_tokens"],
        total_output_tokens=t["output_tokens"],
        total_cost=t["cost"],
        unique_users=t["unique_users"],
        shadow_refusals=t["shadow_refusals"],
        summary_fallbacks=t["summary_fallbacks"],
        total_tool_followup_cost=t["tool_followup_cost"],
        total_summary_cost=t["summary_cost"],
        rows=[UsageRow(date=row["date"], **_figures(row)) for row in rows],
    )


def usage_summary(
    *,
    start: date,
    end: date,
    bucket: str | None,
    user_id: int | None = None,
    model: str | None = None,
) -> UsageSummary:
    """Usage between two local dates, from the rollups (billing.rollup), in two queries whatever the events.

    Unfiltered: the (day, user shard) rows and the users' active-day bitmaps. Filtered by user or
    model: the (day, user, model) rows of that user or model.
    """
    if bucket is not None and bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)} or None, not {bucket!r}")
    if start > end:
        raise ValueError(f"start ({start}) is after end ({end})")
    if user_id is None and model is None:
        return _usage_from_day_shards(start=start, end=end, bucket=bucket)
    return _usage_from_rollup(start=start, end=end, bucket=bucket, user_id=user_id, model=model)


_ROLLUP_TRUNC = {"week": TruncWeek, "month": TruncMonth}


def _rollup_aggregates() -> dict:
    # Aliases differ from the column names: an alias equal to a column would shadow it in filter=.
    return {
        "n_calls": Sum("calls"),
        "n_failed_calls": Sum("failed_calls"),
        "n_input_tokens": Sum("input_tokens"),
        "n_output_tokens": Sum("output_tokens"),
        "n_cost": Sum("cost"),
        # A user counts once per bucket however many (model, day) rows they have in it.
        "n_unique_users": Count("user", distinct=True, filter=Q(calls__gt=0)),
        "n_shadow_refusals": Sum("shadow_refusals"),
        "n_summary_fallbacks": Sum("summary_fallbacks"),
        "n_tool_followup_cost": Sum("tool_followup_cost"),
        "n_summary_cost": Sum("summary_cost"),
    }


def _usage_from_rollup(
    *, start: date, end: date, bucket: str | None, user_id: int | None, model: str | None
) -> UsageSummary:
    """usage_summary over the daily rollup (days already cut in REPORT_TIME_ZONE): the same figures."""
    days = UsageDaily.objects.filter(day__gte=start, day__lte=end)
    if user_id is not None:
        days = days.filter(user_id=user_id)
    if model is not None:
        days = days.filter(model=model)
    totals = days.aggregate(**_rollup_aggregates())
    rows = []
    if bucket is not None:
        if bucket == "day":
            grouped = days.values(bucket_start=F("day"))
        else:
            grouped = days.annotate(bucket_start=_ROLLUP_TRUNC[bucket]("day")).values("bucket_start")
        rows = [
            {**_unprefixed(group), "date": group["bucket_start"]}
            for group in grouped.annotate(**_rollup_aggregates()).order_by("bucket_start")
        ]
    return _summary(start=start, end=end, bucket=bucket, totals=_unprefixed(totals), rows=rows)


def _unprefixed(values: dict) -> dict:
    return {key.removeprefix("n_"): value for key, value in values.items()}


# --- Unfiltered usage from the day-shard rollup and the users' active-day bitmaps ---------------

_DAY_SHARD = UsageDayShard._meta.db_table
# What the day-shard queries return after a bucket's date: _FIGURES, then the unique users.
_SHARD_COLUMNS = (
    "calls",
    "failed_calls",
    "input_tokens",
    "output_tokens",
    "cost",
    "shadow_refusals",
    "summary_fallbacks",
    "tool_followup_cost",
    "summary_cost",
    "unique_users",
)
# sum() of a bigint is numeric in PostgreSQL: counts are cast back so they come out as ints.
_FIGURES = (
    "coalesce(sum(calls), 0)::bigint, coalesce(sum(failed_calls), 0)::bigint, "
    "coalesce(sum(input_tokens), 0)::bigint, coalesce(sum(output_tokens), 0)::bigint, "
    "coalesce(sum(cost), 0), coalesce(sum(shadow_refusals), 0)::bigint, "
    "coalesce(sum(summary_fallbacks), 0)::bigint, coalesce(sum(tool_followup_cost), 0), "
    "coalesce(sum(summary_cost), 0)"
)


def _usage_from_day_shards(*, start: date, end: date, bucket: str | None) -> UsageSummary:
    """usage_summary with no user or model filter, exact and independent of the number of events.

    Figures are sums over the (day, shard) rows of the range. Unique users: per day, the rows'
    `users`; per week or month, the bitmaps of that period with a bit in the range (one row per user,
    so a count); over the range, the distinct users of the month bitmaps it touches. Two queries.
    """
    active_sql, params = BITMAPS["month"].active_users_sql(start=start, end=end)
    params |= {"start": start, "end": end}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_FIGURES}, (SELECT count(*) FROM (SELECT DISTINCT user_id FROM "  # noqa: S608
            f"({active_sql}) AS active) AS distinct_users) "
            f"FROM {_DAY_SHARD} WHERE day BETWEEN %(start)s AND %(end)s",
            params,
        )
        totals = dict(zip(_SHARD_COLUMNS, cursor.fetchone(), strict=True))
        rows = []
        if bucket is not None:
            cursor.execute(*_day_shard_buckets_sql(start=start, end=end, bucket=bucket))
            rows = [
                {"date": day, **dict(zip(_SHARD_COLUMNS, values, strict=True))}
                for day, *values in cursor.fetchall()
            ]
    return _summary(start=start, end=end, bucket=bucket, totals=totals, rows=rows)


def _day_shard_buckets_sql(*, start: date, end: date, bucket: str) -> tuple[str, dict]:
    """One row per bucket with events, oldest first: figures, shadow refusals, then unique users."""
    params = {"start": start, "end": end}
    in_range = f"FROM {_DAY_SHARD} WHERE day BETWEEN %(start)s AND %(end)s"
    if bucket == "day":
        return f"SELECT day, {_FIGURES}, sum(users)::bigint {in_range} GROUP BY day ORDER BY day", params  # noqa: S608
    bitmap = BITMAPS[bucket]
    active_sql, active_params = bitmap.active_users_sql(start=start, end=end)
    params |= active_params
    return (
        f"WITH figures AS (SELECT {bitmap.start_sql('day')} AS period, {_FIGURES} "  # noqa: S608
        f"{in_range} GROUP BY 1), users AS (SELECT period, count(*) AS n FROM ({active_sql}) "
        "AS active GROUP BY period) "
        "SELECT figures.*, coalesce(users.n, 0) FROM figures LEFT JOIN users USING (period) ORDER BY period",
        params,
    )


# --- Ledger export ---------------------------------------------------------------------------

LEDGER_EXPORT_COLUMNS = (
    "id",
    "created_at",
    "user_id",
    "username",
    "kind",
    "amount",
    "balance_after",
    "reason",
    "initiated_by_id",
    "initiated_by_username",
    "llm_call_id",
    "idempotency_key",
    "refund_of",
)
# The database columns behind LEDGER_EXPORT_COLUMNS, in the same order (one joined query).
_LEDGER_EXPORT_VALUES = (
    "id",
    "created_at",
    "wallet__user_id",
    "wallet__user__username",
    "kind",
    "amount",
    "balance_after",
    "reason",
    "initiated_by_id",
    "initiated_by__username",
    "llm_call_id",
    "idempotency_key",
    "refund_of_id",
)
EXPORT_CHUNK_SIZE = 2000


def ledger_export_queryset(
    *,
    kind: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    user_id: int | None = None,
) -> QuerySet[CreditTransaction]:
    """Ledger rows for export, oldest first: `created_after` inclusive, `created_before` exclusive."""
    rows = CreditTransaction.objects.all()
    if kind is not None:
        rows = rows.filter(kind=kind)
    if created_after is not None:
        rows = rows.filter(created_at__gte=created_after)
    if created_before is not None:
        rows = rows.filter(created_at__lt=created_before)
    if user_id is not None:
        rows = rows.filter(wallet__user_id=user_id)
    return rows.order_by("id")


def ledger_export_rows(
    queryset: QuerySet[CreditTransaction] | None = None, *, chunk_size: int = EXPORT_CHUNK_SIZE
) -> Iterator[tuple]:
    """Tuples in LEDGER_EXPORT_COLUMNS order, fetched in chunks (the ledger is never held in memory).

    `queryset` is any CreditTransaction queryset (e.g. the admin's selection); by default, the whole
    ledger. Values are raw (datetimes, Decimals); formatting for a file is the writer's job.
    """
    if queryset is None:
        queryset = ledger_export_queryset()
    if not queryset.query.order_by:
        queryset = queryset.order_by("id")
    yield from queryset.values_list(*_LEDGER_EXPORT_VALUES).iterator(chunk_size=chunk_size)
