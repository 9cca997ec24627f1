"""A spending cap set while calls wait for the wallet (threads, own connections): they see it.

The reservation and the charge lock the wallet's row, then read the limits; a cap committed while
they waited for the lock must be read by them (billing migration 0028), else the charge's cost is
missing from the cap's counter for the rest of its period and the reservation is not checked.
"""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, transaction

from billing import services
from billing.models import SpendLimit, Wallet
from billing.services import set_spend_cap
from tests.factories import ModelPriceFactory, UserFactory, fund

pytestmark = [pytest.mark.django_db(transaction=True)]

D = Decimal


def _while_waiting_for_the_wallet(user, call, then):
    """Run `call` on its own thread and connection while this thread holds `user`'s wallet lock; once
    the call waits for that lock, run `then` in the lock's transaction and commit. The call's result."""
    result = {}

    def run():
        try:
            result["value"] = call()
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            result["error"] = exc
        finally:
            connection.close()

    with transaction.atomic():
        Wallet.objects.select_for_update().get(user=user)
        thread = threading.Thread(target=run)
        thread.start()
        _wait_for_a_lock_wait()
        then()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the call never finished"
    if "error" in result:
        raise result["error"]
    return result["value"]


def _wait_for_a_lock_wait(timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # a transaction keeps its first view
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("the call never waited for the wallet's lock")


def test_a_charge_waiting_for_the_wallet_counts_in_a_cap_set_meanwhile():
    user = UserFactory()
    fund(user, "100")
    price = ModelPriceFactory(input_price_per_1k=D("1"), output_price_per_1k=D("2"))
    hold = services.reserve(user=user, amount=D("1")).hold
    charged = _while_waiting_for_the_wallet(
        user,
        lambda: services.charge(
            user=user, price=price, provider="echo", input_tokens=10, output_tokens=10, hold=hold
        ),
        lambda: set_spend_cap(user=user, kind=SpendLimit.Kind.USER_CAP, amount=D("50"), period="month"),
    )
    cap = SpendLimit.objects.get(wallet__user=user, kind=SpendLimit.Kind.USER_CAP)
    assert charged.event.cost > 0
    assert cap.spent == charged.event.cost


def test_a_reservation_waiting_for_the_wallet_is_refused_by_a_cap_set_meanwhile():
    user = UserFactory()
    fund(user, "100")
    reservation = _while_waiting_for_the_wallet(
        user,
        lambda: services.reserve(user=user, amount=D("1")),
        lambda: set_spend_cap(user=user, kind=SpendLimit.Kind.STAFF_CAP, amount=D("0"), period="day"),
    )
    assert reservation.refused
    assert reservation.full_limit.kind == SpendLimit.Kind.STAFF_CAP
    assert Wallet.objects.get(user=user).held == 0
