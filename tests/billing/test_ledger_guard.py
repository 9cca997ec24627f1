from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction

from billing import services
from billing.models import CreditTransaction, LedgerAppendOnly

pytestmark = pytest.mark.django_db


@pytest.fixture
def row(user, staff_user):
    return services.grant(user=user, amount="5", reason="x", initiated_by=staff_user)


def test_model_save_refuses_to_update_a_row(row):
    row.amount = Decimal("500")
    with pytest.raises(LedgerAppendOnly):
        row.save()
    assert CreditTransaction.objects.get(pk=row.pk).amount == Decimal("5")


def test_model_and_queryset_delete_are_refused(row):
    with pytest.raises(LedgerAppendOnly):
        row.delete()
    with pytest.raises(LedgerAppendOnly):
        CreditTransaction.objects.all().delete()
    assert CreditTransaction.objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize(
    ("kind", "amount"),
    [("grant", "-1"), ("grant", "0"), ("debit", "1"), ("debit", "0"), ("refund", "-1"), ("adjustment", "0")],
)
def test_check_constraints_refuse_wrong_signs_per_kind(user, kind, amount):
    with pytest.raises(DatabaseError), transaction.atomic():
        CreditTransaction.objects.create(
            wallet=user.wallet, kind=kind, amount=Decimal(amount), balance_after=Decimal(amount)
        )


def test_unknown_kind_is_refused_by_the_database(user):
    with pytest.raises(DatabaseError), transaction.atomic():
        CreditTransaction.objects.create(wallet=user.wallet, kind="gift", amount=1, balance_after=1)


def test_idempotency_key_is_unique_per_wallet_in_the_database(row):
    kwargs = dict(wallet=row.wallet, kind="grant", amount=1, balance_after=6, idempotency_key="dup")
    CreditTransaction.objects.create(**kwargs)
    with pytest.raises(DatabaseError), transaction.atomic():
        CreditTransaction.objects.create(**kwargs)


def test_postgres_trigger_refuses_orm_update(row):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        CreditTransaction.objects.filter(pk=row.pk).update(amount=Decimal("500"))
    assert CreditTransaction.objects.get(pk=row.pk).amount == Decimal("5")


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE billing_credittransaction SET amount = 500 WHERE id = %s",
        "UPDATE billing_credittransaction SET reason = 'edited' WHERE id = %s",
        "DELETE FROM billing_credittransaction WHERE id = %s",
    ],
)
def test_postgres_trigger_refuses_raw_update_and_delete(row, sql):
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, [row.pk])
    fresh = CreditTransaction.objects.get(pk=row.pk)
    assert (fresh.amount, fresh.reason) == (Decimal("5"), "x")
