"""Reads of the usage rollups: one selector per usage question, taking filters, returning rows of figures.

Each row is a dict keyed by USAGE_KEYS (each figure of billing.models.USAGE_FIGURES, then
`unique_users`), plus `date` (the bucket's first local day) for a bucket's row; an empty aggregate
may be None. Days are the rollups' local days in REPORT_TIME_ZONE. With no user or model filter the
answer comes from the (day, user shard) rows and the users' active-day bitmaps, otherwise from the
(day, user, model) rows of that user or model, and for one API key from its (day, key, model) rows:
one query per selector whatever the events.
"""

from datetime import date
from decimal import Decimal

from django.db.models import Case, Count, F, Max, Q, QuerySet, Sum, Value, When
from django.db.models.functions import TruncMonth, TruncWeek

from billing.models import USAGE_FIGURES, SpendLimit, UsageDaily, UsageKeyDaily
from billing.periods import PERIODS, period_start
from billing.rollup import BITMAPS, DAY_SHARD
from core.money import to_decimal
from core.replica import read_connection

BUCKETS = ("day", "week", "month")
USAGE_KEYS = (*(figure.name for figure in USAGE_FIGURES), "unique_users")
MONEY_KEYS = tuple(figure.name for figure in USAGE_FIGURES if figure.money)


def usage_totals(*, start: date, end: date, user_id: int | None = None, model: str | None = None) -> dict:
    """The figures and unique users over [start, end] (local days, inclusive), optionally of one user or model."""
    if user_id is None and model is None:
        return _shard_totals(start=start, end=end)
    return _unprefixed(
        _daily_rows(start=start, end=end, user_id=user_id, model=model).aggregate(**_aggregates())
    )


def usage_by_bucket(
    *, start: date, end: date, bucket: str, user_id: int | None = None, model: str | None = None
) -> list[dict]:
    """One row per day, week or month of [start, end] that has usage, oldest first, with its `date`."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}, not {bucket!r}")
    if user_id is None and model is None:
        return _shard_buckets(start=start, end=end, bucket=bucket)
    days = _daily_rows(start=start, end=end, user_id=user_id, model=model)
    return _by_bucket(days, bucket=bucket, aggregates=_aggregates())


# --- Filtered by user or model: the (day, user, model) rows ----------------------------------------

_TRUNC = {"week": TruncWeek, "month": TruncMonth}


def _daily_rows(*, start: date, end: date, user_id: int | None, model: str | None):
    days = UsageDaily.objects.filter(day__gte=start, day__lte=end)
    if user_id is not None:
        days = days.filter(user_id=user_id)
    if model is not None:
        days = days.filter(model=model)
    return days


def _by_bucket(days: QuerySet, *, bucket: str, aggregates: dict) -> list[dict]:
    """Rollup rows (each a local `day`) grouped by day, week or month, each group's figures aggregated."""
    if bucket == "day":
        grouped = days.values(bucket_start=F("day"))
    else:
        grouped = days.annotate(bucket_start=_TRUNC[bucket]("day")).values("bucket_start")
    return [
        {**_unprefixed(group), "date": group["bucket_start"]}
        for group in grouped.annotate(**aggregates).order_by("bucket_start")
    ]


def _aggregates() -> dict:
    # Aliases differ from the column names: an alias equal to a column would shadow it in filter=.
    return {
        **{f"n_{figure.name}": Sum(figure.name) for figure in USAGE_FIGURES},
        # A user counts once per bucket however many (model, day) rows they have in it.
        "n_unique_users": Count("user", distinct=True, filter=Q(calls__gt=0)),
    }


def _unprefixed(values: dict) -> dict:
    return {key.removeprefix("n_"): value for key, value in values.items()}


# --- Unfiltered: the (day, user shard) rows and the users' active-day bitmaps -----------------------

# Each figure summed over the rows in range; sum() of a bigint is numeric in PostgreSQL, so counts
# are cast back and come out as ints.
_SUMMED_FIGURES = ",\n        ".join(
    f"coalesce(sum({figure.name}), 0)" + ("" if figure.money else "::bigint") for figure in USAGE_FIGURES
)
_SHARD_TOTALS_SQL = f"""
    SELECT
        -- the figures: sums over the range's (day, shard) rows
        {_SUMMED_FIGURES},
        -- unique users: the distinct users of the month bitmaps the range touches, masked to its days
        (SELECT count(*) FROM (SELECT DISTINCT user_id FROM ({{active_users}}) AS active) AS distinct_users)
    FROM {DAY_SHARD}
    WHERE day BETWEEN %(start)s AND %(end)s
"""  # noqa: S608 - our tables
_SHARD_DAYS_SQL = f"""
    SELECT day,
        {_SUMMED_FIGURES},
        -- a day's unique users: each shard counts its users once, and a user is in one shard
        sum(users)::bigint
    FROM {DAY_SHARD}
    WHERE day BETWEEN %(start)s AND %(end)s
    GROUP BY day
    ORDER BY day
"""  # noqa: S608 - our tables
_SHARD_PERIODS_SQL = f"""
    WITH
    -- the figures per week or month: sums over its (day, shard) rows in range
    period_figures AS (
        SELECT {{period_start}} AS period,
            {_SUMMED_FIGURES}
        FROM {DAY_SHARD}
        WHERE day BETWEEN %(start)s AND %(end)s
        GROUP BY 1
    ),
    -- its unique users: the bitmaps of that period with a bit in range (one row per user)
    period_users AS (
        SELECT period, count(*) AS users
        FROM ({{active_users}}) AS active
        GROUP BY period
    )
    SELECT period_figures.*, coalesce(period_users.users, 0)
    FROM period_figures
    LEFT JOIN period_users USING (period)
    ORDER BY period
"""  # noqa: S608 - our tables


def _shard_totals(*, start: date, end: date) -> dict:
    active_sql, params = BITMAPS["month"].active_users_sql(start=start, end=end)
    with read_connection().cursor() as cursor:
        cursor.execute(
            _SHARD_TOTALS_SQL.format(active_users=active_sql), params | {"start": start, "end": end}
        )
        return dict(zip(USAGE_KEYS, cursor.fetchone(), strict=True))


def _shard_buckets(*, start: date, end: date, bucket: str) -> list[dict]:
    params = {"start": start, "end": end}
    if bucket == "day":
        sql = _SHARD_DAYS_SQL
    else:
        bitmap = BITMAPS[bucket]
        active_sql, active_params = bitmap.active_users_sql(start=start, end=end)
        params |= active_params
        sql = _SHARD_PERIODS_SQL.format(period_start=bitmap.start_sql("day"), active_users=active_sql)
    with read_connection().cursor() as cursor:
        cursor.execute(sql, params)
        return [
            {"date": day, **dict(zip(USAGE_KEYS, values, strict=True))} for day, *values in cursor.fetchall()
        ]


# --- One API key's calls: the (day, key, model) rows -------------------------------------------------


def key_usage_totals(*, start: date, end: date, spend_limit_id: int, model: str | None = None) -> dict:
    """usage_totals for the calls of one API key (its billing limit)."""
    return _unprefixed(
        _key_rows(start=start, end=end, spend_limit_id=spend_limit_id, model=model).aggregate(
            **_key_aggregates()
        )
    )


def key_usage_by_bucket(
    *, start: date, end: date, bucket: str, spend_limit_id: int, model: str | None = None
) -> list[dict]:
    """usage_by_bucket for the calls of one API key."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}, not {bucket!r}")
    days = _key_rows(start=start, end=end, spend_limit_id=spend_limit_id, model=model)
    return _by_bucket(days, bucket=bucket, aggregates=_key_aggregates())


def usage_by_limit(*, start: date, end: date, user_id: int, model: str | None = None) -> list[dict]:
    """A user's calls, failed calls and cost per API key (its billing limit) over [start, end]; one query.

    A key with only failed calls in range has a row too (0 calls, 0 cost): its `failed_calls` says why."""
    days = UsageKeyDaily.objects.filter(spend_limit__wallet__user_id=user_id, day__gte=start, day__lte=end)
    if model is not None:
        days = days.filter(model=model)
    return list(
        days.values("spend_limit_id")
        .annotate(calls=Sum("calls"), failed_calls=Sum("failed_calls"), cost=Sum("cost"))
        .values("spend_limit_id", "calls", "failed_calls", "cost")
        .order_by("spend_limit_id")
    )


def key_usage_by_period(*, spend_limit: SpendLimit) -> dict[str, Decimal]:
    """A key's charges since the current local day, week and month began, each plus its open holds (one query)."""
    starts = {period: period_start(period) for period in PERIODS}
    # Aliases apart from the periods' names: "day" would shadow the column in filter=.
    totals = UsageKeyDaily.objects.filter(
        spend_limit_id=spend_limit.pk, day__gte=min(starts.values())
    ).aggregate(
        **{
            f"since_{period}": Sum("cost", filter=Q(day__gte=start), default=0)
            for period, start in starts.items()
        }
    )
    return {period: to_decimal(totals[f"since_{period}"] + spend_limit.held) for period in PERIODS}


def _key_rows(*, start: date, end: date, spend_limit_id: int, model: str | None):
    days = UsageKeyDaily.objects.filter(spend_limit_id=spend_limit_id, day__gte=start, day__lte=end)
    if model is not None:
        days = days.filter(model=model)
    return days


def _key_aggregates() -> dict:
    return {
        **{f"n_{figure.name}": Sum(figure.name) for figure in USAGE_FIGURES},
        # A key is one user's: they count once where the key made a successful call.
        "n_unique_users": Max(Case(When(calls__gt=0, then=Value(1)), default=Value(0))),
    }
