"""Reporting reads: the usage summary presented from billing's usage selectors, and the ledger rows for CSV export."""

from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import connections
from django.db.models import QuerySet

from accounts.models import ApiKey
from billing.models import CreditTransaction
from billing.periods import local_today
from billing.usage_selectors import (
    BUCKETS,
    MONEY_KEYS,
    key_usage_by_bucket,
    key_usage_totals,
    usage_by_bucket,
    usage_by_limit,
    usage_totals,
)
from core.api_fields import id_in_range
from core.db import one_snapshot
from core.money import to_decimal
from core.replica import read_alias

DEFAULT_RANGE_DAYS = 30


def _chat_cost(*, cost: Decimal, tool_followup: Decimal, summary: Decimal, api: Decimal) -> Decimal:
    """Chat: a cost less what answered tool results, summarized sessions or went through the gateway.

    The rollups keep a figure for each other purpose, and chat is what remains; said once here, so
    the staff summary, the user's own report and the admin page split a gateway call alike.
    """
    return cost - tool_followup - summary - api


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
    api_cost: Decimal = Decimal(0)  # the part of `cost` spent through the gateway (API keys)

    @property
    def chat_cost(self) -> Decimal:
        """The part of `cost` that answered users' chat turns."""
        return _chat_cost(
            cost=self.cost,
            tool_followup=self.tool_followup_cost,
            summary=self.summary_cost,
            api=self.api_cost,
        )


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
    total_api_cost: Decimal = Decimal(0)

    @property
    def total_chat_cost(self) -> Decimal:
        """The part of `total_cost` that answered users' chat turns."""
        return _chat_cost(
            cost=self.total_cost,
            tool_followup=self.total_tool_followup_cost,
            summary=self.total_summary_cost,
            api=self.total_api_cost,
        )


def default_range(today: date | None = None) -> tuple[date, date]:
    """The last 30 days ending today (both inclusive), today taken in REPORT_TIME_ZONE."""
    if today is None:
        today = local_today()
    return today - timedelta(days=DEFAULT_RANGE_DAYS - 1), today


def _money(value) -> Decimal:
    return to_decimal(value if value is not None else 0)


# The figures a report shows (UsageRow's): billing's usage selectors may answer more, such as a
# figure just declared in billing.models.USAGE_FIGURES that no report presents yet.
_SHOWN = tuple(field.name for field in fields(UsageRow) if field.name != "date")


def _figures(values: dict) -> dict:
    """A bucket's or a range's shown figures, an empty aggregate (None) read as 0."""
    figures = {key: values.get(key) or 0 for key in _SHOWN}
    for key in set(MONEY_KEYS) & set(_SHOWN):
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
        total_api_cost=t["api_cost"],
        rows=[UsageRow(date=row["date"], **_figures(row)) for row in rows],
    )


def usage_summary(
    *,
    start: date,
    end: date,
    bucket: str | None,
    user_id: int | None = None,
    model: str | None = None,
    key_id: int | None = None,
) -> UsageSummary:
    """Usage between two local dates, from the rollups (billing.usage_selectors), in two queries whatever the events.

    Unfiltered: the (day, user shard) rows and the users' active-day bitmaps. Filtered by user or
    model: the (day, user, model) rows of that user or model. The totals and the bucket rows are
    read in one snapshot, so the totals are the rows' sum even while calls are being charged.
    """
    if bucket is not None and bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)} or None, not {bucket!r}")
    if start > end:
        raise ValueError(f"start ({start}) is after end ({end})")
    # The totals and the rows in one snapshot, on the connection billing's readers use (read_alias():
    # the replica inside using_replica(), when healthy): a transaction on any other would leave their
    # reads each in a snapshot of its own. The totals alone are one statement, a snapshot already.
    if not all(id_in_range(pk) for pk in (user_id, key_id) if pk is not None):
        # An id past the largest a row can have (a query's, core.api_fields.MAX_ID) names no one: the
        # zeros of an unknown id, without handing PostgreSQL a number its bigint columns cannot compare.
        return _summary(start=start, end=end, bucket=bucket, totals={}, rows=[])
    with one_snapshot(read_alias()) if bucket is not None else nullcontext():
        if key_id is not None:
            return _key_summary(
                start=start, end=end, bucket=bucket, user_id=user_id, model=model, key_id=key_id
            )
        totals = usage_totals(start=start, end=end, user_id=user_id, model=model)
        rows = []
        if bucket is not None:
            rows = usage_by_bucket(start=start, end=end, bucket=bucket, user_id=user_id, model=model)
    return _summary(start=start, end=end, bucket=bucket, totals=totals, rows=rows)


def _key_summary(
    *, start: date, end: date, bucket: str | None, user_id: int | None, model: str | None, key_id: int
) -> UsageSummary:
    """The summary of one API key's calls (none: zeros), from billing's per-key readers."""
    spend_limit_id = (
        ApiKey.objects.filter(pk=key_id, **({"user_id": user_id} if user_id is not None else {}))
        .values_list("spend_limit_id", flat=True)
        .first()
    )
    if spend_limit_id is None:
        return _summary(start=start, end=end, bucket=bucket, totals={}, rows=[])
    totals = key_usage_totals(start=start, end=end, spend_limit_id=spend_limit_id, model=model)
    rows = []
    if bucket is not None:
        rows = key_usage_by_bucket(
            start=start, end=end, bucket=bucket, spend_limit_id=spend_limit_id, model=model
        )
    return _summary(start=start, end=end, bucket=bucket, totals=totals, rows=rows)


@dataclass(frozen=True)
class KeyUsage:
    key_id: int
    prefix: str
    name: str
    calls: int
    failed_calls: int
    cost: Decimal


def usage_by_key(*, start: date, end: date, user_id: int, model: str | None = None) -> list[KeyUsage]:
    """A user's calls, failed calls and cost per API key over [start, end] (keys with any call, successful
    or failed), newest key first."""
    rows = usage_by_limit(start=start, end=end, user_id=user_id, model=model)
    keys = ApiKey.objects.filter(spend_limit_id__in=[row["spend_limit_id"] for row in rows]).in_bulk(
        field_name="spend_limit_id"
    )
    found = [
        KeyUsage(
            key_id=keys[row["spend_limit_id"]].pk,
            prefix=keys[row["spend_limit_id"]].prefix,
            name=keys[row["spend_limit_id"]].name,
            calls=row["calls"],
            failed_calls=row["failed_calls"],
            cost=_money(row["cost"]),
        )
        for row in rows
        if row["spend_limit_id"] in keys
    ]
    return sorted(found, key=lambda usage: -usage.key_id)


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
        # An id no row can have (past core.api_fields.MAX_ID) finds nothing, unasked: PostgreSQL would
        # refuse to compare it with a bigint column.
        rows = rows.filter(wallet__user_id=user_id) if id_in_range(user_id) else rows.none()
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
    rows = queryset.values_list(*_LEDGER_EXPORT_VALUES)
    if connections[rows.db].settings_dict.get("DISABLE_SERVER_SIDE_CURSORS") and tuple(
        queryset.query.order_by
    ) in (("id",), ("pk",)):
        yield from _by_id_chunks(rows, chunk_size)
    else:
        yield from rows.iterator(chunk_size=chunk_size)


def _by_id_chunks(rows: QuerySet, chunk_size: int) -> Iterator[tuple]:
    """`rows` (ordered by id, id first) one query per chunk, each after the last id read, all in one snapshot.

    Behind a transaction pooler no server-side cursor outlives a transaction (settings:
    DATABASE_SERVER_PREPARE=false), and iterator() would then read the whole result at once. The
    chunks are read in one REPEATABLE READ, READ ONLY transaction, so the export is the ledger as it
    stood when the export began, as a server-side cursor's is: without it each chunk would be a
    snapshot of its own, and a row committed mid-export with an id below the last one read would be
    missing while later ones were not. The transaction keeps its server connection until the export
    ends (the pooler lends it for that long).
    """
    with one_snapshot(rows.db):
        yield from _chunks(rows, chunk_size)


def _chunks(rows: QuerySet, chunk_size: int) -> Iterator[tuple]:
    after = None
    while True:
        chunk = list((rows if after is None else rows.filter(id__gt=after))[:chunk_size])
        yield from chunk
        if len(chunk) < chunk_size:
            return
        after = chunk[-1][0]
