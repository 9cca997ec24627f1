"""Call events' monthly partitions: created ahead by a periodic job, a past month exported and detached.

billing_llmcallevent is range-partitioned on created_at by UTC month (billing 0020), one table per
month named `billing_llmcallevent_yYYYYmMM`, plus a DEFAULT partition that catches a row no month
covers (the job fell behind) so that a charge never fails for want of a partition. Usage figures live
in the rollups, so a detached month leaves every report unchanged. docs/scaling-data.md.
"""

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from billing.exceptions import PartitionRefused
from billing.models import DetachedCallMonth, LLMCallEvent

logger = logging.getLogger(__name__)

TABLE = LLMCallEvent._meta.db_table
DEFAULT_PARTITION = f"{TABLE}_default"
# Any number: only one creator of partitions runs at a time (the job, the command, a test).
_PARTITION_LOCK = 7_205_251_001


@dataclass(frozen=True)
class Partition:
    name: str
    month: date  # the first day (UTC)
    rows: int | None = None  # estimated (pg_class.reltuples), when asked


def month_start(value: date | datetime) -> date:
    """The first day of the UTC month that holds `value`."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC).date()
    return value.replace(day=1)


def next_month(month: date) -> date:
    return (
        month.replace(year=month.year + 1, month=1)
        if month.month == 12
        else month.replace(month=month.month + 1)
    )


def partition_name(month: date) -> str:
    return f"{TABLE}_y{month:%Y}m{month:%m}"


def _bounds(month: date) -> tuple[str, str]:
    # DDL takes no parameters: literals built from dates only.
    return f"'{month.isoformat()} 00:00:00+00'", f"'{next_month(month).isoformat()} 00:00:00+00'"


def call_event_partitions() -> list[Partition]:
    """The attached monthly partitions, oldest first, with their estimated row counts."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT child.relname, child.reltuples::bigint
            FROM pg_inherits
            JOIN pg_class child ON child.oid = pg_inherits.inhrelid
            WHERE pg_inherits.inhparent = %s::regclass AND child.relname <> %s
            ORDER BY child.relname
            """,
            [TABLE, DEFAULT_PARTITION],
        )
        rows = cursor.fetchall()
    return [
        Partition(name=name, month=date(int(name[-7:-3]), int(name[-2:]), 1), rows=max(tuples, 0))
        for name, tuples in rows
    ]


def ensure_call_event_partitions(
    *, months_ahead: int | None = None, now: datetime | None = None
) -> list[str]:
    """Every month from this one to `months_ahead` after it has its partition; returns the ones created.

    A month whose rows already sit in the DEFAULT partition gets them moved into its new partition in
    the same transaction (PostgreSQL refuses to create a partition over rows the default holds).
    The new table is attached rather than created as a partition: attaching takes a lighter lock on
    the parent, so charges keep inserting meanwhile.
    """
    months_ahead = settings.CALL_EVENT_PARTITIONS_AHEAD if months_ahead is None else months_ahead
    month = month_start(now or timezone.now())
    wanted = [month]
    for _ in range(months_ahead):
        month = next_month(month)
        wanted.append(month)
    created = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PARTITION_LOCK])
        existing = {p.month for p in call_event_partitions()}
        for month in wanted:
            if month in existing:
                continue
            _create_partition(cursor, month)
            created.append(partition_name(month))
    if created:
        logger.info("call event partitions created", extra={"partitions": created})
    return created


def _create_partition(cursor, month: date) -> None:
    name = partition_name(month)
    low, high = _bounds(month)
    # IF NOT EXISTS: a month detached by hand comes back with its rows.
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {name} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )
    # Rows of this month that the default caught: moved, so that the attach below finds none there.
    cursor.execute(
        f"""
        WITH stray AS (
            DELETE FROM {DEFAULT_PARTITION} WHERE created_at >= {low} AND created_at < {high} RETURNING *
        )
        INSERT INTO {name} SELECT * FROM stray
        """  # noqa: S608 - names of our own tables
    )
    if cursor.rowcount:
        logger.warning(
            "call events moved out of the default partition",
            extra={"partition": name, "rows": cursor.rowcount},
        )
    cursor.execute(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})")


def default_partition_rows() -> int:
    """How many call events sit in the DEFAULT partition (none while the job keeps up)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {DEFAULT_PARTITION}")  # noqa: S608 - names of our own tables
        return cursor.fetchone()[0]


@dataclass(frozen=True)
class Detached:
    record: DetachedCallMonth
    export_seconds: float  # COPY out to the file
    detach_seconds: float  # the DETACH (and DROP) alone: how long charges may wait on the table's lock


def detach_call_month(
    *, month: date, export_to: Path, drop: bool = False, on_rows: Callable[[int, int], None] | None = None
) -> Detached:
    """A past month's events written to `export_to` as CSV, then its partition detached (and dropped if asked).

    One transaction: the rows counted and exported, the partition detached, the month recorded; the
    detach waits at most CALL_EVENT_DETACH_LOCK_TIMEOUT_MS for the parent's lock, so that a long
    transaction on the table makes this fail (nothing detached, the file removed) rather than queue
    every charge behind it. `on_rows(rows, total)` is told the rows exported as the export goes (a
    command's progress).
    """
    month = month_start(month)
    name = partition_name(month)
    if month >= month_start(timezone.now()):  # (asking for next_month(9999-12) would overflow)
        raise PartitionRefused(f"{month:%Y-%m} is not over yet: only a past month can be detached.")
    attached = name in {p.name for p in call_event_partitions()}
    if not attached and not _default_rows_of(month):
        raise PartitionRefused(_why_no_partition(month))
    export_to = Path(export_to)
    try:  # before anything is changed: a file that cannot be made leaves the database as it was
        out = open(export_to, "xb")  # noqa: SIM115 - closed below, removed when anything fails
    except OSError as exc:
        raise PartitionRefused(f"Cannot create the export file {export_to}: {exc.strerror}.") from exc
    try:
        if not attached:
            # Written before their month's partition existed: give the month its partition first (the
            # job's own step, which moves them out of the DEFAULT partition), then detach it as any other.
            ensure_call_event_partitions(months_ahead=0, now=datetime(month.year, month.month, 1, tzinfo=UTC))
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PARTITION_LOCK])
            cursor.execute(f"SELECT count(*), min(id), max(id) FROM {name}")  # noqa: S608 - names of our own tables
            count, first_id, last_id = cursor.fetchone()
            started = time.monotonic()
            with out:  # written, flushed to the disk and closed before anything is detached or dropped
                _export(cursor, name, out, on_rows=(lambda rows: on_rows(rows, count)) if on_rows else None)
                out.flush()
                os.fsync(out.fileno())
            _fsync_directory(export_to)
            exported = time.monotonic()
            # A caller's transaction may hold deferred foreign-key checks on these rows (PostgreSQL
            # refuses to detach a table with pending trigger events): run them now.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            # Only now the parent's lock: the export above held none that blocks a charge.
            cursor.execute(f"SET LOCAL lock_timeout = '{int(settings.CALL_EVENT_DETACH_LOCK_TIMEOUT_MS)}ms'")
            cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {name}")
            if drop:
                cursor.execute(f"DROP TABLE {name}")
            detached = time.monotonic()
            # A record left by an earlier detach of this month, attached again by hand since: this one replaces it.
            DetachedCallMonth.objects.filter(month=month).delete()
            record = DetachedCallMonth.objects.create(
                month=month,
                partition=name,
                rows=count,
                first_id=first_id,
                last_id=last_id,
                exported_to=str(export_to.resolve()),
                dropped=drop,
            )
    except BaseException as exc:
        # Nothing was committed (the transaction is the last step): the partial file goes too.
        with contextlib.suppress(OSError):
            out.close()
        export_to.unlink(missing_ok=True)
        if isinstance(exc, OperationalError) and "lock timeout" in str(exc):
            raise PartitionRefused(
                f"{TABLE} stayed locked by another transaction for more than "
                f"{settings.CALL_EVENT_DETACH_LOCK_TIMEOUT_MS} ms: nothing was detached, run again."
            ) from exc
        raise
    result = Detached(record=record, export_seconds=exported - started, detach_seconds=detached - exported)
    logger.info(
        "call event month detached",
        extra={
            "partition": name,
            "rows": count,
            "export": str(export_to),
            "dropped": drop,
            "export_seconds": round(result.export_seconds, 3),
            "detach_seconds": round(result.detach_seconds, 3),
        },
    )
    return result


def _fsync_directory(path: Path) -> None:
    """Make a new file's directory entry durable (the file's own fsync does not)."""
    directory = os.open(path.resolve().parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def attach_call_month(*, month: date) -> str:
    """A month detached without --drop attached again, its DetachedCallMonth record removed; what was done.

    The table is attached as the partition job attaches a new month (rows of the month the DEFAULT
    partition caught meanwhile are moved into it first), waiting at most
    CALL_EVENT_DETACH_LOCK_TIMEOUT_MS for the parent's lock. A month attached by hand already only
    loses its stale record (which kept rebuild_usage_rollup refusing and check_ledger skipping it).
    """
    month = month_start(month)
    name = partition_name(month)
    record = DetachedCallMonth.objects.filter(month=month).first()
    if name in {p.name for p in call_event_partitions()}:
        if record is None:
            raise PartitionRefused(f"{month:%Y-%m} is attached: there is nothing to attach.")
        record.delete()
        return f"{month:%Y-%m} was attached already (by hand): its record as detached is removed."
    if record is not None and record.dropped:
        raise PartitionRefused(
            f"{month:%Y-%m} was dropped on {record.detached_at:%Y-%m-%d}: its {record.rows} call events are "
            f"only in {record.exported_to}; there is no table to attach."
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        if not cursor.fetchone()[0]:
            raise PartitionRefused(
                f"There is no table {name} to attach: {month:%Y-%m} was never detached here."
            )
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PARTITION_LOCK])
            cursor.execute(f"SET LOCAL lock_timeout = '{int(settings.CALL_EVENT_DETACH_LOCK_TIMEOUT_MS)}ms'")
            _create_partition(cursor, month)
            DetachedCallMonth.objects.filter(month=month).delete()
    except OperationalError as exc:
        if "lock timeout" not in str(exc):
            raise
        raise PartitionRefused(
            f"{TABLE} stayed locked by another transaction for more than "
            f"{settings.CALL_EVENT_DETACH_LOCK_TIMEOUT_MS} ms: nothing was attached, run again."
        ) from exc
    logger.info("call event month attached", extra={"partition": name})
    return f"{month:%Y-%m}: table {name} attached again; its call events are listed and counted as before."


def _default_rows_of(month: date) -> int:
    """How many of the month's call events sit in the DEFAULT partition."""
    start, end = _bounds(month)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {DEFAULT_PARTITION} WHERE created_at >= {start} AND created_at < {end}"  # noqa: S608 - literals from a date
        )
        return cursor.fetchone()[0]


def _why_no_partition(month: date) -> str:
    """Why a month has nothing to detach: detached already, or it has no call events."""
    done = DetachedCallMonth.objects.filter(month=month).first()
    if done is not None:
        return (
            f"{month:%Y-%m} was detached already, on {done.detached_at:%Y-%m-%d}: its {done.rows} call events "
            f"are in {done.exported_to}."
        )
    return f"No attached partition holds the call events of {month:%Y-%m}: there are none for that month."


def _export(cursor, name: str, out, *, on_rows: Callable[[int], None] | None = None) -> None:
    """COPY the partition out as CSV with a header, oldest first, on the caller's transaction."""
    raw = cursor.cursor  # psycopg's own cursor: COPY ... TO STDOUT streams through it
    with raw.copy(
        f"COPY (SELECT * FROM {name} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true)"  # noqa: S608 - names of our own tables
    ) as copy:
        header_pending = True  # the file's first line names the columns: not a row, never counted as one
        for chunk in copy:
            out.write(chunk)
            if on_rows is not None:
                lines = bytes(chunk).count(b"\n")  # a line a row (a newline inside a value counts too)
                if header_pending and lines:
                    lines, header_pending = lines - 1, False
                on_rows(lines)
