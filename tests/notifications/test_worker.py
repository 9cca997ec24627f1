"""A real worker process (`manage.py procrastinate worker`) on the test database: retries, and a SIGKILL mid-delivery."""

import json
import signal
import threading
from decimal import Decimal

import pytest
from werkzeug import Response

from billing import services as billing_services
from billing.models import WalletEvent
from notifications.models import Delivery
from tests.factories import ModelPriceFactory, StaffUserFactory, UserFactory
from tests.notifications.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def cross_low_balance() -> WalletEvent:
    """A committed debit across the threshold: its event and delivery job are there for a worker."""
    user = UserFactory()
    billing_services.grant(user=user, amount=Decimal("2"), reason="test", initiated_by=StaffUserFactory())
    price = ModelPriceFactory(input_price_per_1k=Decimal("1.5"), output_price_per_1k=Decimal("0"))
    billing_services.charge(user=user, price=price, provider="echo", input_tokens=1000, output_tokens=0)
    return WalletEvent.objects.get(wallet__user=user, type=WalletEvent.Type.LOW_BALANCE)


def webhook_delivery(event: WalletEvent) -> Delivery | None:
    return Delivery.objects.filter(event=event, channel="webhook").first()


def test_a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt(worker, httpserver):
    answers = iter([500, 500, 500, 200])
    received = []

    def receive(request):
        received.append(json.loads(request.get_data())["id"])
        return Response(status=next(answers, 200))

    httpserver.expect_request("/hook", method="POST").respond_with_handler(receive)
    event = cross_low_balance()
    worker(WEBHOOK_URL=httpserver.url_for("/hook"), WEBHOOK_RETRY_BASE_SECONDS=1)

    delivered = wait_for(
        lambda: (d := webhook_delivery(event)) and d.state == "delivered" and d,
        timeout=60,
        what="the webhook delivery to succeed",
    )
    assert delivered.attempts == 4
    assert received == [str(event.uuid)] * 4
    assert Delivery.objects.get(event=event, channel="email").attempts == 1


def test_a_worker_killed_mid_delivery_leads_to_redelivery_after_restart(worker, httpserver):
    first_request_in = threading.Event()
    release_first = threading.Event()
    received = []

    def receive(request):
        received.append(json.loads(request.get_data())["id"])
        if len(received) == 1:
            first_request_in.set()
            release_first.wait(timeout=30)  # the worker dies while waiting for this answer
        return Response(status=200)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(receive)
    event = cross_low_balance()
    env = {"WEBHOOK_URL": httpserver.url_for("/hook"), "WEBHOOK_TIMEOUT_SECONDS": 60}
    first = worker(**env)
    assert first_request_in.wait(timeout=60), "the first worker never started the delivery"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    release_first.set()
    in_flight = webhook_delivery(event)
    assert (in_flight.state, in_flight.attempts) == (
        "pending",
        1,
    )  # the attempt was committed before the POST

    worker(**env)
    delivered = wait_for(
        lambda: (d := webhook_delivery(event)) and d.state == "delivered" and d,
        timeout=60,
        what="the restarted worker to redeliver",
    )
    assert delivered.attempts == 2
    assert received == [str(event.uuid)] * 2  # the same id twice: the receiver dedupes
