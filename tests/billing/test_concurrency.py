"""Real concurrency on PostgreSQL: threads with their own connections moving one wallet."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection

from billing import services
from billing.models import CreditTransaction, Wallet
from billing.reconcile import check_ledger
from tests.factories import ModelPriceFactory, StaffUserFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True)]

THREADS = 8
OPERATIONS = 400


def run_in_threads(workers: int, jobs):
    """Run each job on a pool thread; every thread closes its own connection when done."""
    barrier = threading.Barrier(workers)

    def start(job):
        try:
            return job()
        finally:
            connection.close()

    def warm(_):
        barrier.wait()  # all threads connect and start together, to make the races real

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(warm, range(workers)))
        return list(pool.map(start, jobs))


def test_mixed_grants_and_charges_on_one_wallet_lose_no_update():
    user, staff = UserFactory(), StaffUserFactory()
    price = ModelPriceFactory(input_price_per_1k=Decimal("0.123457"), output_price_per_1k=Decimal("0.987653"))
    expected = Decimal(0)
    jobs = []
    for i in range(OPERATIONS):
        if i % 2:
            amount = Decimal("1.000001") + Decimal(i) / 1000
            expected += amount
            jobs.append(
                lambda a=amount: services.grant(user=user, amount=a, reason="load", initiated_by=staff)
            )
        else:
            cost = services.compute_cost(price=price, input_tokens=100 + i, output_tokens=50 + i)
            expected -= cost
            jobs.append(
                lambda n=i: services.charge(
                    user=user, price=price, provider="echo", input_tokens=100 + n, output_tokens=50 + n
                )
            )
    run_in_threads(THREADS, jobs)

    assert Wallet.objects.get(user=user).balance == expected
    assert CreditTransaction.objects.filter(wallet__user=user).count() == OPERATIONS
    result = check_ledger()
    assert result.ok, result.discrepancies
    assert result.rows == OPERATIONS


def test_fifty_threads_racing_one_idempotency_key_write_one_row():
    user, staff = UserFactory(), StaffUserFactory()

    def attempt():
        row = services.grant(
            user=user, amount="25", reason="race", initiated_by=staff, idempotency_key="race-1"
        )
        return row.pk, row.replayed

    results = run_in_threads(50, [attempt] * 50)

    assert len({pk for pk, _ in results}) == 1
    assert sum(1 for _, replayed in results if not replayed) == 1
    assert CreditTransaction.objects.filter(wallet__user=user).count() == 1
    assert Wallet.objects.get(user=user).balance == Decimal("25")
    assert check_ledger().ok
