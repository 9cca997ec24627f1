"""The ledger export behind a transaction pooler (DATABASE_SERVER_PREPARE=false): no server-side cursor,
yet still read in chunks, one query each, every row once and in order."""

from decimal import Decimal

import pytest
from django.db import connection

from billing import services
from billing.models import CreditTransaction
from reporting.selectors import ledger_export_queryset, ledger_export_rows
from tests.factories import StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_server_side_cursors(monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "DISABLE_SERVER_SIDE_CURSORS", True)


def test_export_reads_by_id_chunks_without_server_side_cursors(
    no_server_side_cursors, django_assert_num_queries
):
    staff = StaffUserFactory()
    for n in range(7):
        services.grant(user=UserFactory(), amount=Decimal(n + 1), reason=f"g{n}", initiated_by=staff)
    expected = list(CreditTransaction.objects.order_by("id").values_list("id", flat=True))
    assert len(expected) == 7
    with django_assert_num_queries(3):  # chunks of 3: 3, 3, then 1 (short: the last)
        ids = [row[0] for row in ledger_export_rows(chunk_size=3)]
    assert ids == expected
    with django_assert_num_queries(2):  # the selection's filter holds in every chunk
        rows = list(
            ledger_export_rows(ledger_export_queryset(kind="grant").filter(amount__gte=4), chunk_size=3)
        )
    assert [row[0] for row in rows] == expected[3:]


def test_export_with_another_order_is_read_whole(no_server_side_cursors, django_assert_num_queries):
    staff = StaffUserFactory()
    for n in range(4):
        services.grant(user=UserFactory(), amount=Decimal(n + 1), reason=f"g{n}", initiated_by=staff)
    with django_assert_num_queries(1):
        rows = list(ledger_export_rows(CreditTransaction.objects.order_by("-id"), chunk_size=2))
    assert [row[0] for row in rows] == sorted((row[0] for row in rows), reverse=True)


@pytest.mark.django_db(transaction=True)
def test_a_chunked_export_is_the_ledger_as_it_stood_when_it_began(no_server_side_cursors):
    """Rows committed by another connection while the export runs are not in it: one snapshot, as a
    server-side cursor's, not one per chunk (which would keep a later row and miss an earlier one)."""
    import threading

    staff = StaffUserFactory()
    users = [UserFactory() for _ in range(3)]
    for n, user in enumerate(users):
        services.grant(user=user, amount=Decimal(n + 1), reason=f"g{n}", initiated_by=staff)
    before = list(CreditTransaction.objects.order_by("id").values_list("id", flat=True))

    def grant_elsewhere():  # its own connection, committed before the export's next chunk
        try:
            services.grant(user=users[0], amount=Decimal(9), reason="mid-export", initiated_by=staff)
        finally:
            connection.close()

    rows = ledger_export_rows(chunk_size=2)
    read = [next(rows)[0]]
    thread = threading.Thread(target=grant_elsewhere)
    thread.start()
    thread.join()
    read += [row[0] for row in rows]

    assert read == before
    assert CreditTransaction.objects.filter(reason="mid-export").exists()
    assert not connection.in_atomic_block  # the export's transaction ended with it
