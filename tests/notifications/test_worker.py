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
from notifications.services import DELIVER_TASK as DELIVER
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


def test_a_receiver_that_hangs_does_not_hold_up_the_chores(worker, httpserver):
    # One slot a worker: a delivery waiting on a slow receiver (up to WEBHOOK_TIMEOUT_SECONDS, each
    # event) held every chore behind it: holds not released, lots not expired, stalled jobs not retried.
    from django.db import connection
    from django.utils import timezone

    hanging, release = threading.Event(), threading.Event()

    def receive(request):
        hanging.set()
        release.wait(timeout=40)
        return Response(status=200)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(receive)
    event = cross_low_balance()
    worker(
        concurrency=None, WEBHOOK_URL=httpserver.url_for("/hook"), WEBHOOK_TIMEOUT_SECONDS=40
    )  # the defaults
    try:
        assert hanging.wait(timeout=60), "the worker never started the delivery"
        hung_at = timezone.now()

        def chores_done():  # chores that finished while the delivery hung (the periodic ones: every 10 s)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM procrastinate_events event"
                    " JOIN procrastinate_jobs job ON job.id = event.job_id"
                    " WHERE event.type = 'succeeded' AND job.queue_name = 'default' AND event.at > %s",
                    [hung_at],
                )
                return cursor.fetchone()[0]

        wait_for(chores_done, timeout=30, what="a periodic chore to run beside the hanging delivery")
        assert webhook_delivery(event).state == "pending"  # still waiting on the receiver
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT queue_name, priority FROM procrastinate_jobs WHERE task_name = %s", [DELIVER]
            )
            assert cursor.fetchall() == [("notifications", -10)]
    finally:
        release.set()
    wait_for(lambda: webhook_delivery(event).state == "delivered", timeout=30, what="the delivery to finish")
