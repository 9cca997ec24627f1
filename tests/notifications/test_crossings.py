"""Crossings: one WalletEvent (and one delivery job) per crossing, recorded in the moving transaction."""

from decimal import Decimal

import pytest
from django.db import connection, transaction

from billing import services
from billing.models import WalletEvent
from billing.services.crossings import crossings
from tests.billing.test_concurrency import run_in_threads
from tests.factories import ModelPriceFactory, StaffUserFactory, UserFactory

LOW, DEPLETED, REPLENISHED = (
    WalletEvent.Type.LOW_BALANCE,
    WalletEvent.Type.DEPLETED,
    WalletEvent.Type.REPLENISHED,
)
D = Decimal


def delivery_jobs() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (args->>'event_id')::bigint FROM procrastinate_jobs "
            "WHERE task_name = 'notifications.deliver_wallet_event' ORDER BY id"
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("5", "2", []),
        ("5", "1", [LOW]),  # reaching the threshold is crossing it
        ("1", "0.5", []),  # already at or below: no second notice
        ("1.5", "0", [LOW, DEPLETED]),
        ("0.5", "0", [DEPLETED]),
        ("0", "-1", []),
        ("0.5", "3", [REPLENISHED]),
        ("1", "1.000001", [REPLENISHED]),
        ("2", "3", []),
    ],
)
def test_crossings_are_from_above_to_at_or_below(before, after, expected):
    assert crossings(balance_before=D(before), balance_after=D(after), threshold=D("1")) == expected


@pytest.mark.django_db(transaction=True)
def test_sixteen_concurrent_debits_record_exactly_one_event_per_crossing(clean_queue):
    user, staff = UserFactory(), StaffUserFactory()
    services.grant(user=user, amount=D("4"), reason="test", initiated_by=staff)
    # 1000 input tokens at 0.5 per 1k: each charge costs 0.5; 16 of them take 4 down to -4.
    price = ModelPriceFactory(input_price_per_1k=D("0.5"), output_price_per_1k=D("0"))
    jobs = [
        lambda: services.charge(user=user, price=price, provider="echo", input_tokens=1000, output_tokens=0)
        for _ in range(16)
    ]
    run_in_threads(16, jobs)

    events = list(WalletEvent.objects.filter(wallet__user=user).order_by("id"))
    assert [(e.type, e.balance_before, e.balance) for e in events] == [
        (LOW, D("1.5"), D("1")),
        (DEPLETED, D("0.5"), D("0")),
    ]
    assert delivery_jobs() == [e.pk for e in events]  # one job per event, none more


@pytest.mark.django_db
def test_replenished_only_after_a_low_notice_then_low_again_on_the_next_crossing(settings):
    settings.STARTING_CREDITS = D("5")
    user, staff = UserFactory(), StaffUserFactory()  # starting credits lift 0 -> 5: no event
    price = ModelPriceFactory(input_price_per_1k=D("1"), output_price_per_1k=D("0"))
    assert not WalletEvent.objects.filter(wallet__user=user).exists()

    services.charge(user=user, price=price, provider="echo", input_tokens=4500, output_tokens=0)  # 5 -> 0.5
    services.charge(user=user, price=price, provider="echo", input_tokens=100, output_tokens=0)  # 0.5 -> 0.4
    services.grant(user=user, amount=D("2"), reason="top-up", initiated_by=staff)  # 0.4 -> 2.4
    services.charge(user=user, price=price, provider="echo", input_tokens=2000, output_tokens=0)  # -> 0.4

    types = list(WalletEvent.objects.filter(wallet__user=user).order_by("id").values_list("type", flat=True))
    assert types == [LOW, REPLENISHED, LOW]


@pytest.mark.django_db
def test_a_hold_moves_no_balance_and_records_nothing():
    user = UserFactory()
    reservation = services.reserve(user=user, amount=D("3"))
    services.release(hold=reservation.hold)
    assert not WalletEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_debit_leaves_neither_event_nor_job(clean_queue):
    user, staff = UserFactory(), StaffUserFactory()
    services.grant(user=user, amount=D("2"), reason="test", initiated_by=staff)
    price = ModelPriceFactory(input_price_per_1k=D("3"), output_price_per_1k=D("0"))
    with pytest.raises(RuntimeError), transaction.atomic():
        services.charge(user=user, price=price, provider="echo", input_tokens=1000, output_tokens=0)
        assert WalletEvent.objects.count() == 2 and len(delivery_jobs()) == 2
        raise RuntimeError("the turn failed after its debit")
    assert not WalletEvent.objects.exists()
    assert delivery_jobs() == []
