"""A usage summary's totals and bucket rows are one snapshot, even while calls are being charged.

A call is charged, from another connection and committed, between the summary's totals read and its
bucket read (billing's reader patched to charge first): the totals must still be the rows' sum. On the
replica too: the "replica" alias mirrors the test database over a connection of its own
(config/settings_test.py), so a commit on the primary is seen there at once, as on a caught-up replica.
"""

import threading
from decimal import Decimal

import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from django.test.utils import CaptureQueriesContext

import reporting.selectors
from billing import services
from billing.models import ModelPrice
from billing.periods import local_today
from core import replica
from reporting.selectors import usage_summary
from tests.factories import ModelPriceFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, replica.REPLICA])


@pytest.fixture
def price(db):
    return ModelPriceFactory(input_price_per_1k=Decimal("1"), output_price_per_1k=Decimal("1"))


def charge_one_call(user, price: ModelPrice) -> None:
    services.charge(user=user, price=price, provider="echo", input_tokens=1000, output_tokens=0)


def charge_committed_elsewhere(user, price: ModelPrice) -> None:
    """One call charged and committed on another thread's connection, as a concurrent turn would."""

    def charge():
        try:
            charge_one_call(user, price)
        finally:
            connections.close_all()

    thread = threading.Thread(target=charge)
    thread.start()
    thread.join()


@pytest.fixture
def a_charge_between_the_reads(monkeypatch, price):
    """The user's second call lands after the totals are read and before the bucket rows are."""
    user = UserFactory()
    charge_one_call(user, price)
    real = reporting.selectors.usage_by_bucket

    def after_a_charge(**kwargs):
        charge_committed_elsewhere(user, price)
        return real(**kwargs)

    monkeypatch.setattr(reporting.selectors, "usage_by_bucket", after_a_charge)
    return user


@pytest.mark.parametrize("by_user", [False, True], ids=["day shards", "a user's daily rows"])
def test_totals_are_the_sum_of_the_rows_while_calls_are_charged(a_charge_between_the_reads, by_user):
    filters = {"user_id": a_charge_between_the_reads.pk} if by_user else {}
    today = local_today()

    with CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as captured:
        summary = usage_summary(start=today, end=today, bucket="day", **filters)

    # One statement more than the two reads: the snapshot's (BEGIN and COMMIT are not statements here).
    # As served, the two reads and the three statements of their snapshot.
    sql = [query["sql"] for query in captured.captured_queries]
    assert len(sql) == 5
    assert (sql[0], sql[1], sql[-1]) == (
        "BEGIN",
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        "COMMIT",
    )
    assert summary.total_calls == sum(row.calls for row in summary.rows) == 1
    assert summary.total_cost == sum(row.cost for row in summary.rows) == Decimal(1)
    assert usage_summary(start=today, end=today, bucket="day", **filters).total_calls == 2  # it was committed


def test_on_the_replica_the_snapshot_is_the_replicas(a_charge_between_the_reads, settings):
    settings.DATABASE_REPLICA_URL = "postgres://mirror-of-the-test-database"
    replica.reset_replica_state()
    today = local_today()
    try:
        with CaptureQueriesContext(connections[replica.REPLICA]) as on_replica:
            summary = replica.reads_replica(usage_summary)(start=today, end=today, bucket="week")
    finally:
        replica.reset_replica_state()

    assert summary.total_calls == sum(row.calls for row in summary.rows) == 1
    sql = [query["sql"] for query in on_replica.captured_queries]
    assert any(s.startswith("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ") for s in sql)
    assert sum("billing_usage" in s for s in sql) >= 2  # the totals and the rows, both read there
