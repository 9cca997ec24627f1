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
