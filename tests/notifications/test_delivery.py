"""Delivery: the signed webhook (checked by the docs' receiver snippet), email, dead after N tries, Redeliver."""

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.core import mail
from werkzeug import Response

from billing import services as billing_services
from billing.models import WalletEvent
from notifications import services, signing
from notifications.models import Delivery
from tests.factories import ModelPriceFactory, StaffUserFactory, UserFactory
from tests.notifications.conftest import SECRET

DOCS = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"


def docs_verify():
    """The `verify` function of the receiver snippet in docs/notifications.md, run as written."""
    code = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    namespace = {"__name__": "receiver_snippet"}
    exec(compile(code, str(DOCS), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["verify"]


def low_balance_event(user=None) -> WalletEvent:
    user = user or UserFactory()
    billing_services.grant(user=user, amount=Decimal("2"), reason="test", initiated_by=StaffUserFactory())
    price = ModelPriceFactory(input_price_per_1k=Decimal("1.5"), output_price_per_1k=Decimal("0"))
    billing_services.charge(user=user, price=price, provider="echo", input_tokens=1000, output_tokens=0)
    return WalletEvent.objects.get(wallet__user=user, type=WalletEvent.Type.LOW_BALANCE)


@pytest.fixture
def webhook(settings, httpserver):
    settings.WEBHOOK_URL = httpserver.url_for("/hooks/creditdesk")
    settings.WEBHOOK_SECRET = SECRET
    return httpserver


@pytest.mark.django_db
def test_a_loopback_receiver_verifies_the_signature_with_the_documented_snippet(webhook):
    seen = []

    def receive(request):
        event = docs_verify()(request.headers["Creditdesk-Signature"], request.get_data(), SECRET)
        seen.append(event)
        return Response(status=204)

    webhook.expect_request("/hooks/creditdesk", method="POST").respond_with_handler(receive)
    event = low_balance_event()
    services.deliver_event(event_id=event.pk, attempt=1, final=False)

    assert seen == [
        {
            "id": str(event.uuid),
            "type": "wallet.low_balance",
            "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
            "data": {"user_id": event.wallet.user_id, "balance": "0.500000", "threshold": "1.000000"},
        }
    ]
    webhook_row = Delivery.objects.get(event=event, channel="webhook")
    assert (webhook_row.state, webhook_row.attempts, webhook_row.last_error) == ("delivered", 1, "")
    assert [m.to for m in mail.outbox] == [[event.wallet.user.email]]
    assert "running low" in mail.outbox[0].subject


@pytest.mark.django_db
def test_the_snippet_refuses_a_tampered_body(webhook):
    bodies = []
    webhook.expect_request("/hooks/creditdesk").respond_with_handler(
        lambda request: (
            bodies.append((request.headers["Creditdesk-Signature"], request.get_data()))
            or Response(status=200)
        )
    )
    services.deliver_event(event_id=low_balance_event().pk, attempt=1, final=False)
    header, body = bodies[0]
    tampered = body.replace(b'"balance":"0.500000"', b'"balance":"9.500000"')
    with pytest.raises(ValueError, match="signature mismatch"):
        docs_verify()(header, tampered, SECRET)


@pytest.mark.django_db
def test_a_failing_receiver_is_retried_then_dead_on_the_last_try(webhook):
    webhook.expect_request("/hooks/creditdesk").respond_with_data("down", status=500)
    event = low_balance_event()
    with pytest.raises(services.DeliveryFailed, match="HTTP 500"):
        services.deliver_event(event_id=event.pk, attempt=1, final=False)
    services.deliver_event(event_id=event.pk, attempt=2, final=True)  # the last try does not raise

    row = Delivery.objects.get(event=event, channel="webhook")
    assert (row.state, row.attempts) == ("dead", 2)
    assert "HTTP 500" in row.last_error
    email = Delivery.objects.get(event=event, channel="email")
    assert (email.state, email.attempts) == ("delivered", 1)  # sent once, not again on the retry


@pytest.mark.django_db
def test_no_webhook_url_skips_the_webhook(settings):
    settings.WEBHOOK_URL = ""
    event = low_balance_event()
    services.deliver_event(event_id=event.pk, attempt=1, final=False)
    assert dict(Delivery.objects.filter(event=event).values_list("channel", "state")) == {
        "webhook": "skipped",
        "email": "delivered",
    }


@pytest.mark.django_db
def test_redelivering_after_the_webhook_url_is_set_sends_the_skipped_webhook(settings, httpserver):
    """Set the URL, then redeliver: an event first sent without one reaches it (it stayed skipped)."""
    settings.WEBHOOK_URL = ""
    event = low_balance_event()
    services.deliver_event(event_id=event.pk, attempt=1, final=False)
    settings.WEBHOOK_URL, settings.WEBHOOK_SECRET = httpserver.url_for("/hooks/creditdesk"), SECRET
    httpserver.expect_request("/hooks/creditdesk").respond_with_data("ok")

    services.redeliver(event=event)
    services.deliver_event(event_id=event.pk, attempt=1, final=False)

    states = dict(Delivery.objects.filter(event=event).values_list("channel", "state"))
    assert states == {"webhook": "delivered", "email": "delivered"}
    assert len(httpserver.log) == 1
    assert len(mail.outbox) == 2  # the email went again too: a redelivery sends every channel


@pytest.mark.django_db
def test_admin_pages_show_events_deliveries_and_the_wallets_last_crossing(admin_client, webhook):
    webhook.expect_request("/hooks/creditdesk").respond_with_data("ok")
    event = low_balance_event()
    services.deliver_event(event_id=event.pk, attempt=1, final=False)
    delivery = Delivery.objects.get(event=event, channel="webhook")

    for url in [
        "/admin/billing/walletevent/",
        f"/admin/billing/walletevent/{event.pk}/change/",
        "/admin/notifications/delivery/",
        f"/admin/notifications/delivery/{delivery.pk}/change/",
    ]:
        assert admin_client.get(url).status_code == 200, url
    wallet_page = admin_client.get(f"/admin/billing/wallet/{event.wallet_id}/change/")
    assert "wallet.low_balance" in wallet_page.content.decode()


@pytest.mark.django_db
def test_redeliver_action_resets_the_deliveries_and_queues_a_job(admin_client, webhook):
    webhook.expect_request("/hooks/creditdesk").respond_with_data("ok")
    event = low_balance_event()
    services.deliver_event(event_id=event.pk, attempt=1, final=False)

    response = admin_client.post(
        "/admin/billing/walletevent/", {"action": "redeliver", "_selected_action": [event.pk]}, follow=True
    )
    assert "Redelivery queued for 1 event" in response.content.decode()
    assert set(Delivery.objects.filter(event=event).values_list("state", flat=True)) == {"pending"}
    services.deliver_event(event_id=event.pk, attempt=1, final=False)
    assert Delivery.objects.get(event=event, channel="webhook").attempts == 2
    assert len(webhook.log) == 2
    assert json.loads(webhook.log[1][0].get_data())["id"] == str(event.uuid)  # same id: receivers dedupe


@pytest.mark.django_db
@pytest.mark.parametrize("receivers_secret", [SECRET, "the-old-secret"])
def test_while_secrets_change_over_a_receiver_with_either_verifies(webhook, settings, receivers_secret):
    settings.WEBHOOK_SECRET_PREVIOUS = "the-old-secret"
    seen = []

    def receive(request):
        header = request.headers["Creditdesk-Signature"]
        seen.append(
            (header.count("v1="), docs_verify()(header, request.get_data(), receivers_secret)["type"])
        )
        return Response(status=204)

    webhook.expect_request("/hooks/creditdesk", method="POST").respond_with_handler(receive)
    event = low_balance_event()
    services.deliver_event(event_id=event.pk, attempt=1, final=False)
    assert seen == [(2, "wallet.low_balance")]
    header = signing.sign(body=b"{}", secret=SECRET, previous="the-old-secret")
    with pytest.raises(ValueError, match="signature mismatch"):  # a third secret is still refused
        docs_verify()(header, b"{}", "neither")


@pytest.fixture
def trickling_receiver():
    """A receiver that answers its status line, then a header line every 0.2 s, never ending its headers:
    each read is quick, the answer never whole."""
    import socket
    import threading
    import time

    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                    while not stop.is_set():
                        conn.sendall(b"X-Trickle: 1\r\n")
                        time.sleep(0.2)
                except OSError:
                    pass  # the sender gave up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stop.set()
    thread.join(5)
    server.close()


@pytest.mark.django_db
def test_webhook_timeout_bounds_the_whole_attempt_not_each_read(settings, trickling_receiver):
    """A receiver trickling its headers held a worker slot (and the event's lock) as long as it liked."""
    import time

    settings.WEBHOOK_URL, settings.WEBHOOK_SECRET, settings.WEBHOOK_TIMEOUT_SECONDS = (
        trickling_receiver,
        SECRET,
        1,
    )
    event = low_balance_event()
    started = time.monotonic()

    with pytest.raises(services.DeliveryFailed):
        services.deliver_event(event_id=event.pk, attempt=1, final=False)

    assert time.monotonic() - started < 5  # one timeout and a little, not the receiver's pace
    row = Delivery.objects.get(event=event, channel="webhook")
    assert "no whole answer within WEBHOOK_TIMEOUT_SECONDS (1 s)" in row.last_error
