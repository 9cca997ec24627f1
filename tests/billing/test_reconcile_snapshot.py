"""check_ledger reads the whole ledger in one snapshot: a charge committing mid-check is not a discrepancy."""

import threading
from decimal import Decimal

import pytest
from django.db import connection

from billing import reconcile, services
from billing.reconcile import check_ledger
from tests.factories import ModelPriceFactory, StaffUserFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True)]


def _charge_on_another_connection(user, price) -> None:
    """One charge, made and committed on a connection of its own (a thread), before returning."""

    def charge():
        try:
            services.charge(user=user, price=price, provider="echo", input_tokens=1000, output_tokens=1000)
        finally:
            connection.close()

    thread = threading.Thread(target=charge)
    thread.start()
    thread.join()


def test_check_ledger_is_clean_when_a_charge_commits_between_its_reads(monkeypatch):
    user, staff = UserFactory(), StaffUserFactory()
    price = ModelPriceFactory(input_price_per_1k=Decimal(1), output_price_per_1k=Decimal(1))
    services.grant(user=user, amount=Decimal(100), reason="x", initiated_by=staff)
    original = reconcile._open_holds
    charged = []

    def open_holds_then_a_charge(**kwargs):
        # The row totals are read; the wallets are not yet: a charge commits in between.
        figures = original(**kwargs)
        if not charged:
            _charge_on_another_connection(user, price)
            charged.append(True)
        return figures

    monkeypatch.setattr(reconcile, "_open_holds", open_holds_then_a_charge)
    result = check_ledger()
    assert charged
    assert result.ok, result.discrepancies
    assert result.rows == 1  # the grant only: the charge came after the snapshot
    assert check_ledger().rows == 2


def test_check_ledger_reads_in_one_repeatable_read_read_only_transaction():
    from django.test.utils import CaptureQueriesContext

    UserFactory()
    with CaptureQueriesContext(connection) as queries:
        assert check_ledger().ok
    statements = [q["sql"] for q in queries.captured_queries if q["sql"] != "BEGIN"]
    assert statements[0] == "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
