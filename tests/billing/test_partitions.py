"""Call events partitioned by month: the layout, the job that makes months ahead, retention by detaching a month."""

import csv
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from billing import partitions, services
from billing.exceptions import PartitionRefused
from billing.models import CreditTransaction, DetachedCallMonth, LLMCallEvent
from billing.reconcile import check_ledger
from reporting.selectors import usage_summary
from tests.database import leaf_migrations, migrate

pytestmark = pytest.mark.django_db


def _home(event_id: int) -> str:
    """The partition a call event's row lives in."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM billing_llmcallevent WHERE id = %s", [event_id])
        return cursor.fetchone()[0]


def _table_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return cursor.fetchone()[0]


def _charge(user, price, at: datetime):
    return services.charge(
        user=user, price=price, provider="echo", input_tokens=1000, output_tokens=500, occurred_at=at
    )


def test_every_partition_has_every_index_of_the_events_and_none_is_invalid():
    """An index made on the parent alone (ON ONLY) would cover no partition and stay INVALID: reads of
    events by user, model or time would scan every month."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid")
        assert cursor.fetchall() == []
        cursor.execute(
            "SELECT inhrelid::regclass::text, (SELECT count(*) FROM pg_index WHERE indrelid = inhrelid)"
            " FROM pg_inherits WHERE inhparent = %s::regclass",
            [LLMCallEvent._meta.db_table],
        )
        counts = dict(cursor.fetchall())
        cursor.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", [LLMCallEvent._meta.db_table]
        )
        (on_parent,) = cursor.fetchone()
    assert on_parent >= 5  # the primary key, time, (user, time), (model, time), (key limit, time)
    assert counts and set(counts.values()) == {on_parent}, counts


def test_call_events_table_is_partitioned_by_month_with_three_months_ahead_and_a_default():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'billing_llmcallevent'::regclass"
        )
        assert cursor.fetchone() == ("r",)
    this_month = partitions.month_start(timezone.now())
    months = [p.month for p in partitions.call_event_partitions()]
    expected = [this_month]
    for _ in range(3):
        expected.append(partitions.next_month(expected[-1]))
    assert months[-4:] == expected
    assert _table_exists(partitions.DEFAULT_PARTITION)


def test_the_primary_key_carries_created_at_and_ids_stay_unique_by_sequence(user, price):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'billing_llmcallevent'::regclass AND contype = 'p'"
        )
        assert cursor.fetchone() == ("PRIMARY KEY (id, created_at)",)
    first = _charge(user, price, timezone.now())
    second = _charge(user, price, timezone.now() - timedelta(days=400))  # the default partition
    assert first.event.pk != second.event.pk
    assert LLMCallEvent.objects.get(pk=second.event.pk).cost == second.event.cost


def test_a_charge_lands_in_its_months_partition(user, price):
    now = timezone.now()
    result = _charge(user, price, now)
    assert _home(result.event.pk) == partitions.partition_name(partitions.month_start(now))
    assert CreditTransaction.objects.get(llm_call=result.event).amount == -result.event.cost


def test_a_call_outside_every_month_lands_in_default_and_the_job_moves_it_into_its_month(user, price):
    far = (timezone.now() + timedelta(days=250)).replace(day=15)
    result = _charge(user, price, far)
    assert _home(result.event.pk) == partitions.DEFAULT_PARTITION
    assert partitions.default_partition_rows() == 1

    created = partitions.ensure_call_event_partitions(months_ahead=9)

    month = partitions.month_start(far)
    assert partitions.partition_name(month) in created
    assert _home(result.event.pk) == partitions.partition_name(month)
    assert partitions.default_partition_rows() == 0
    moved = LLMCallEvent.objects.get(pk=result.event.pk)
    assert (moved.cost, moved.created_at) == (result.event.cost, far)


def test_a_past_month_in_the_default_partition_is_given_its_own_and_detached(user, price, tmp_path):
    # Written before the job made its month (a server that ran without the worker): DEFAULT holds it.
    stray = _charge(user, price, datetime(2023, 5, 9, 12, tzinfo=UTC))
    assert _home(stray.event.pk) == partitions.DEFAULT_PARTITION

    detached = partitions.detach_call_month(month=date(2023, 5, 1), export_to=tmp_path / "2023-05.csv")

    assert detached.record.rows == 1 and partitions.default_partition_rows() == 0
    assert str(stray.event.pk) in (tmp_path / "2023-05.csv").read_text()


def test_detaching_a_month_twice_or_one_without_events_says_which(user, price, tmp_path):
    month, _ = _past_month_with_calls(user, price)
    partitions.detach_call_month(month=month, export_to=tmp_path / "once.csv")

    with pytest.raises(PartitionRefused, match="2024-03 was detached already, on .*: its 3 call events"):
        partitions.detach_call_month(month=month, export_to=tmp_path / "twice.csv")
    with pytest.raises(PartitionRefused, match="there are none for that month"):
        partitions.detach_call_month(month=date(2022, 2, 1), export_to=tmp_path / "empty.csv")
    assert not (tmp_path / "twice.csv").exists() and not (tmp_path / "empty.csv").exists()


def test_the_job_creates_nothing_when_the_months_exist():
    assert partitions.ensure_call_event_partitions() == []


def test_the_periodic_job_makes_the_months_ahead():
    from billing.tasks import ensure_call_event_partitions

    with connection.cursor() as cursor:
        last = partitions.call_event_partitions()[-1]
        cursor.execute(f"ALTER TABLE billing_llmcallevent DETACH PARTITION {last.name}")
    assert ensure_call_event_partitions(timestamp=0) == [last.name]


def _past_month_with_calls(user, price) -> tuple[date, list]:
    """A month well before this one, given its partition, with three charged calls in it."""
    month = date(2024, 3, 1)
    assert partitions.ensure_call_event_partitions(months_ahead=0, now=datetime(2024, 3, 10, tzinfo=UTC)) == [
        partitions.partition_name(month)
    ]
    charges = [_charge(user, price, datetime(2024, 3, day, 12, tzinfo=UTC)) for day in (2, 14, 31)]
    return month, charges


def test_detaching_a_month_exports_its_rows_and_reports_still_answer_for_it(user, price, tmp_path):
    month, charges = _past_month_with_calls(user, price)
    before = usage_summary(start=date(2024, 3, 1), end=date(2024, 3, 31), bucket="day")
    assert before.total_calls == 3
    export = tmp_path / "2024-03.csv"

    detached = partitions.detach_call_month(month=month, export_to=export)
    record = detached.record

    assert (record.rows, record.first_id, record.last_id) == (
        3,
        charges[0].event.pk,
        charges[-1].event.pk,
    )
    assert DetachedCallMonth.objects.get(month=month).exported_to == str(export.resolve())
    with open(export, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["id"]) for r in rows] == [c.event.pk for c in charges]
    assert [Decimal(r["cost"]) for r in rows] == [c.event.cost for c in charges]
    assert partitions.partition_name(month) not in {p.name for p in partitions.call_event_partitions()}
    assert _table_exists(partitions.partition_name(month))  # detached, not dropped
    assert not LLMCallEvent.objects.filter(pk=charges[0].event.pk).exists()
    after = usage_summary(start=date(2024, 3, 1), end=date(2024, 3, 31), bucket="day")
    assert (after.total_calls, after.total_cost, after.rows) == (
        before.total_calls,
        before.total_cost,
        before.rows,
    )
    # The ledger rows still name their (archived) calls, and the reconciliation accepts it.
    assert CreditTransaction.objects.filter(llm_call_id=charges[0].event.pk).count() == 1
    assert check_ledger().ok


def test_check_ledger_names_a_ledger_row_whose_call_event_is_missing(user, price):
    result = _charge(user, price, timezone.now())
    assert check_ledger().ok
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM billing_llmcallevent WHERE id = %s", [result.event.pk])
    check = check_ledger()
    assert not check.ok
    assert any(f"call event {result.event.pk} does not exist" in d.problem for d in check.discrepancies)


def test_the_command_detaches_and_drops_a_month(user, price, tmp_path):
    month, charges = _past_month_with_calls(user, price)
    export = tmp_path / "march.csv"
    from io import StringIO

    class Terminal(StringIO):
        def isatty(self):
            return True

    out, terminal = StringIO(), Terminal()
    call_command(
        "detach_call_events",
        "--month",
        "2024-03",
        "--export",
        str(export),
        "--drop",
        stdout=out,
        stderr=terminal,
    )

    # The same count as the summary's: the CSV's header is not a call event (it showed 4/4).
    assert "call events exported: 3/3 rows (100%)" in terminal.getvalue()
    assert "3 call events exported" in out.getvalue()
    assert "partition detached in" in out.getvalue()
    assert "(dropped)" in out.getvalue()
    assert not _table_exists(partitions.partition_name(month))
    assert DetachedCallMonth.objects.get(month=month).dropped
    assert export.read_text().count("\n") == 4  # the header and three rows


def test_the_current_month_cannot_be_detached(tmp_path):
    with pytest.raises(PartitionRefused, match="not over yet"):
        partitions.detach_call_month(month=timezone.now().date(), export_to=tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--month", "2024-13"], "not a month: write it YYYY-MM"),
        (["--month", "2019-01"], "No attached partition holds the call events of 2019-01"),
        (["--month", "9999-12"], "9999-12 is not over yet"),  # was a traceback: year 10000 is out of range
    ],
)
def test_the_command_refuses_bad_months_in_one_line(argv, message, tmp_path):
    with pytest.raises(CommandError, match=message):
        call_command("detach_call_events", *argv, "--export", str(tmp_path / "x.csv"))
    assert not (tmp_path / "x.csv").exists()
    assert not DetachedCallMonth.objects.exists()


def test_an_existing_export_file_is_never_overwritten(user, price, tmp_path):
    month, _ = _past_month_with_calls(user, price)
    export = tmp_path / "taken.csv"
    export.write_text("keep me")
    with pytest.raises(PartitionRefused, match="Cannot create the export file"):
        partitions.detach_call_month(month=month, export_to=export)
    assert export.read_text() == "keep me"
    assert partitions.partition_name(month) in {p.name for p in partitions.call_event_partitions()}


@pytest.mark.django_db(transaction=True)
def test_a_detach_blocked_by_a_long_transaction_gives_up_and_detaches_nothing(
    user, price, tmp_path, settings
):
    """Another connection holds the table (a report mid-scan): the detach waits its lock timeout, no more."""
    import psycopg

    settings.CALL_EVENT_DETACH_LOCK_TIMEOUT_MS = 200
    month, _ = _past_month_with_calls(user, price)
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}) as other:
        other.execute("BEGIN")
        other.execute("SELECT count(*) FROM billing_llmcallevent")  # ACCESS SHARE until it ends
        with pytest.raises(
            PartitionRefused, match="stayed locked by another transaction for more than 200 ms"
        ):
            partitions.detach_call_month(month=month, export_to=tmp_path / "x.csv")
        other.execute("ROLLBACK")
    assert not (tmp_path / "x.csv").exists()
    assert partitions.partition_name(month) in {p.name for p in partitions.call_event_partitions()}
    assert not DetachedCallMonth.objects.exists()


def test_a_rollup_rebuild_refuses_to_erase_a_detached_months_figures(user, price, tmp_path):
    month, _ = _past_month_with_calls(user, price)
    partitions.detach_call_month(month=month, export_to=tmp_path / "m.csv")
    with pytest.raises(CommandError, match="The call events of 2024-03 were detached"):
        call_command("rebuild_usage_rollup")
    assert usage_summary(start=date(2024, 3, 1), end=date(2024, 3, 31), bucket=None).total_calls == 3
    call_command("rebuild_usage_rollup", "--drop-detached-months")
    assert usage_summary(start=date(2024, 3, 1), end=date(2024, 3, 31), bucket=None).total_calls == 0


@pytest.mark.django_db(transaction=True)
def test_the_migration_converts_a_plain_table_with_its_rows_and_back(user):
    """billing 0020 on a table that has rows: same rows and ids, one partition per month, the sequence after them."""

    def partitioned() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'billing_llmcallevent'")
            return cursor.fetchone()[0] == "p"

    leaves = leaf_migrations()
    migrate([("billing", "0023_call_event_links_without_db_constraint")])
    try:
        assert not partitioned()
        times = [datetime(2025, 1, 31, 23, 59, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC), timezone.now()]
        with connection.cursor() as cursor:
            for at in times:
                cursor.execute(
                    "INSERT INTO billing_llmcallevent (user_id, model, provider, cost, input_price_per_1k,"
                    " output_price_per_1k, status, error, latency_ms, shadow_refusal, input_tokens,"
                    " output_tokens, created_at) VALUES (%s, 'm', 'echo', 1.5, 1, 1, 'ok', '', 0, false, 1, 1, %s)"
                    " RETURNING id",
                    [user.pk, at],
                )
            cursor.execute("SELECT id, created_at, cost FROM billing_llmcallevent ORDER BY id")
            before = cursor.fetchall()
    finally:
        migrate(leaves)
    assert partitioned()
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, created_at, cost FROM billing_llmcallevent ORDER BY id")
        assert cursor.fetchall() == before
    homes = [_home(row[0]) for row in before]
    assert homes[:2] == ["billing_llmcallevent_y2025m01", "billing_llmcallevent_y2025m02"]
    assert homes[2] == partitions.partition_name(partitions.month_start(timezone.now()))
    months = [p.month for p in partitions.call_event_partitions()]
    assert months[0] == date(2025, 1, 1) and len(months) == len(set(months))
    assert LLMCallEvent.objects.create(user=user, model="m", provider="echo").pk > before[-1][0]


def test_an_export_that_cannot_reach_the_disk_drops_nothing(user, price, tmp_path, monkeypatch):
    # The transaction (DETACH and DROP) committed before the file was closed: a write failing at the
    # end (a full disk, NFS at close) removed the only copy of a dropped month.
    import errno

    month, _ = _past_month_with_calls(user, price)
    export = tmp_path / "full.csv"

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(partitions.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        partitions.detach_call_month(month=month, export_to=export, drop=True)
    assert partitions.partition_name(month) in {p.name for p in partitions.call_event_partitions()}
    assert not DetachedCallMonth.objects.exists() and not export.exists()
    assert LLMCallEvent.objects.filter(created_at__month=3, created_at__year=2024).count() == 3


def test_an_export_file_that_cannot_be_made_changes_nothing(user, price, tmp_path):
    _charge(
        user, price, datetime(2023, 5, 9, 12, tzinfo=UTC)
    )  # in DEFAULT: detaching would give it a partition
    with pytest.raises(PartitionRefused, match="Cannot create the export file"):
        partitions.detach_call_month(month=date(2023, 5, 1), export_to=tmp_path / "missing" / "x.csv")
    assert partitions.default_partition_rows() == 1  # no partition made for it first


def test_a_detached_month_is_attached_again_and_counted_as_before(user, price, tmp_path):
    month, _ = _past_month_with_calls(user, price)
    partitions.detach_call_month(month=month, export_to=tmp_path / "m.csv")
    stray = _charge(user, price, datetime(2024, 3, 20, tzinfo=UTC))  # caught by DEFAULT meanwhile
    out = StringIO()
    call_command("attach_call_events", "--month", "2024-03", stdout=out)
    assert "attached again" in out.getvalue()
    assert not DetachedCallMonth.objects.exists()
    assert _home(stray.event.pk) == partitions.partition_name(month)
    assert LLMCallEvent.objects.filter(created_at__month=3, created_at__year=2024).count() == 4
    call_command("rebuild_usage_rollup", stdout=StringIO())  # no longer refused
    with pytest.raises(CommandError, match="2024-03 is attached: there is nothing to attach"):
        call_command("attach_call_events", "--month", "2024-03")
    assert check_ledger().ok


def test_a_month_attached_by_hand_loses_its_record_and_can_be_detached_again(user, price, tmp_path):
    month, _ = _past_month_with_calls(user, price)
    partitions.detach_call_month(month=month, export_to=tmp_path / "first.csv")
    name = partitions.partition_name(month)
    with connection.cursor() as cursor:  # as docs/scaling-data.md said to, before the command existed
        cursor.execute(
            f"ALTER TABLE billing_llmcallevent ATTACH PARTITION {name} "
            "FOR VALUES FROM ('2024-03-01 00:00:00+00') TO ('2024-04-01 00:00:00+00')"
        )
    # Detaching it again was an IntegrityError (the first record's month): the new record replaces it.
    again = partitions.detach_call_month(month=month, export_to=tmp_path / "second.csv")
    assert DetachedCallMonth.objects.get().pk == again.record.pk
    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER TABLE billing_llmcallevent ATTACH PARTITION {name} "
            "FOR VALUES FROM ('2024-03-01 00:00:00+00') TO ('2024-04-01 00:00:00+00')"
        )
    out = StringIO()
    call_command("attach_call_events", "--month", "2024-03", stdout=out)
    assert "attached already (by hand)" in out.getvalue() and not DetachedCallMonth.objects.exists()


def test_a_dropped_month_cannot_be_attached_and_says_where_its_rows_are(user, price, tmp_path):
    month, _ = _past_month_with_calls(user, price)
    partitions.detach_call_month(month=month, export_to=tmp_path / "gone.csv", drop=True)
    with pytest.raises(
        CommandError, match=r"2024-03 was dropped on .*: its 3 call events are only in .*gone\.csv"
    ):
        call_command("attach_call_events", "--month", "2024-03")
    with pytest.raises(CommandError, match="There is no table billing_llmcallevent_y2019m01 to attach"):
        call_command("attach_call_events", "--month", "2019-01")
