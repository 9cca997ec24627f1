"""Lots under real concurrency (threads, own connections): expiry racing expiry, a charge racing an expiry."""

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from billing import services
from billing.models import CreditLot, CreditTransaction, LotAllocation, Wallet
from billing.reconcile import check_ledger
from billing.services.ledger import append
from billing.services.lots import expire_lots
from tests.billing.test_concurrency import run_in_threads
from tests.factories import ModelPriceFactory, StaffUserFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True)]

D = Decimal
REPEATS = 50


@pytest.fixture
def per_credit():
    return ModelPriceFactory(input_price_per_1k=D("1"), output_price_per_1k=D("0"))


def _expiring_lot(user, amount: str) -> CreditLot:
    row = append(
        user_id=user.pk,
        kind="grant",
        amount=D(amount),
        reason="trial",
        initiated_by=StaffUserFactory(),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    return CreditLot.objects.get(transaction=row)


def test_two_workers_racing_write_one_expiry_per_lot():
    users = [UserFactory() for _ in range(5)]
    for user in users:
        for _ in range(4):
            _expiring_lot(user, "1.5")
    later = timezone.now() + timedelta(hours=2)
    counts = run_in_threads(2, [lambda: expire_lots(now=later), lambda: expire_lots(now=later)])
    assert sum(counts) == 20
    assert CreditTransaction.objects.filter(kind="expiry").count() == 20
    assert not CreditLot.objects.filter(remaining__gt=0).exists()
    assert check_ledger().ok


def test_a_charge_racing_an_expiry_takes_the_credit_or_nothing_never_both(per_credit):
    for _ in range(REPEATS):
        user = UserFactory()
        lot = _expiring_lot(user, "1")
        later = timezone.now() + timedelta(hours=2)  # the job sees it expired; the charge still live
        run_in_threads(
            2,
            [
                lambda at=later: expire_lots(now=at),
                lambda u=user: services.charge(
                    user=u, price=per_credit, provider="echo", input_tokens=600, output_tokens=0
                ),
            ],
        )
        expired = -sum(
            CreditTransaction.objects.filter(kind="expiry", wallet__user=user).values_list(
                "amount", flat=True
            )
        )
        burned = sum(
            LotAllocation.objects.filter(lot=lot, transaction__kind="debit").values_list("amount", flat=True)
        )
        # Either the charge burned 0.6 and the expiry took the 0.4 left, or the expiry took all of it
        # and the charge went to debt: the lot gave exactly what it held, never more.
        assert (burned, expired) in {(D("0.6"), D("0.4")), (D(0), D(1))}
        wallet = Wallet.objects.get(user=user)
        assert wallet.balance == D(1) - D("0.6") - expired
        result = check_ledger(user_id=user.pk)
        assert result.ok, result.discrepancies


def test_a_charge_waiting_on_the_wallet_lock_sees_the_expiry_committed_meanwhile(per_credit):
    """The charge's statement starts (its snapshot taken) while an expiry holds the wallet lock; it
    must burn what is left after the expiry commits (nothing), not the lot as its snapshot saw it."""
    user = UserFactory()
    lot = _expiring_lot(user, "1")
    locked, charged = threading.Event(), {}

    def expiry_holding_the_lock():
        try:
            with transaction.atomic():
                Wallet.objects.select_for_update().filter(user_id=user.pk).values_list("id").get()
                fresh = CreditLot.objects.get(pk=lot.pk)
                append(
                    user_id=user.pk,
                    kind="expiry",
                    amount=-fresh.remaining,
                    reason="expired",
                    expired_lot=fresh,
                )
                locked.set()
                time.sleep(0.5)  # the charge's statement starts and waits on the wallet meanwhile
        finally:
            connection.close()

    def charge_after_the_lock_is_taken():
        try:
            locked.wait(5)
            charged["result"] = services.charge(
                user=user, price=per_credit, provider="echo", input_tokens=600, output_tokens=0
            )
        finally:
            connection.close()

    threads = [
        threading.Thread(target=expiry_holding_the_lock),
        threading.Thread(target=charge_after_the_lock_is_taken),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    debit_id = charged["result"].transaction_id
    assert list(LotAllocation.objects.filter(transaction_id=debit_id).values_list("lot_id", "amount")) == [
        (None, D("0.6"))
    ]
    wallet = Wallet.objects.get(user=user)
    assert (wallet.balance, wallet.debt) == (D("-0.6"), D("0.6"))
    assert check_ledger(user_id=user.pk).ok


def test_a_reservation_waiting_on_a_sweep_does_not_count_the_swept_lot_twice(settings):
    # The reservation leaves out credits of lots past their expiry that the sweep has not written
    # off. A sweep that commits while the reservation waits for the wallet has already taken them out
    # of the balance: read from the statement's snapshot they would be taken off again, and a wallet
    # with credit left refused.
    settings.CREDIT_ENFORCEMENT_ENABLED = True
    user = UserFactory()
    lot = _expiring_lot(user, "5")
    CreditLot.objects.filter(pk=lot.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    append(user_id=user.pk, kind="grant", amount=D("1"), reason="lives on", initiated_by=StaffUserFactory())
    swept = threading.Event()

    def sweep_then_wait_for_the_reservation_to_queue():
        with transaction.atomic():
            Wallet.objects.select_for_update().filter(user=user).get()
            assert expire_lots() == 1
            swept.set()
            with connection.cursor() as cursor:
                for _ in range(200):  # until the reservation waits on the wallet's lock
                    cursor.execute("SELECT pg_stat_clear_snapshot()")  # else read once a transaction
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                    if cursor.fetchone()[0]:
                        break
                    time.sleep(0.05)
                else:
                    raise AssertionError("the reservation never waited on the wallet")

    def reserve_once_swept():
        assert swept.wait(10)
        return services.reserve(user=user, amount=D("0.5"))

    _, reservation = run_in_threads(2, [sweep_then_wait_for_the_reservation_to_queue, reserve_once_swept])
    assert not reservation.refused
    assert (reservation.balance, reservation.available) == (D(1), D(1))
    assert check_ledger(user_id=user.pk).ok
