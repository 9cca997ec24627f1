"""Buying credits under concurrency and over real sockets: one event delivered 20 times at once credits once;
the double's hosted page pays and its signed event reaches a live server."""

import http.client
import threading
import urllib.parse
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from billing.models import Purchase, Wallet
from billing.reconcile import check_ledger
from tests.stripe_fixtures import (
    WEBHOOK_PATH,
    WEBHOOK_SECRET,
    ledger_purchase_rows,
    paid,
    post_webhook,
    signed_event,
)

pytestmark = pytest.mark.django_db(transaction=True)

DELIVERIES = 20
BODY = {
    "credits": 250,
    "success_url": "https://app.example.com/buy/?session_id={CHECKOUT_SESSION_ID}",
    "cancel_url": "https://app.example.com/buy/",
}


def _at_once(count: int, send) -> list:
    """Run send(i) on `count` threads released together, each on its own database connection."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = send(index)
        except Exception as exc:  # reported by the assertion on results
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def _start(user_client, double) -> dict:
    response = user_client.post("/api/v1/users/me/purchases", BODY, format="json")
    assert response.status_code == 201, response.content
    return double.sessions[response.json()["stripe_session_id"]]


def test_the_same_event_delivered_20_times_at_once_credits_once(user, user_client, stripe_double):
    session = _start(user_client, stripe_double)
    payload, signature = signed_event("checkout.session.completed", paid(session))

    def send(_):
        response = post_webhook(APIClient(), payload, signature)
        return response.status_code, response.json()["outcome"]

    results = _at_once(DELIVERIES, send)

    assert sorted(results) == [(200, "already_paid")] * (DELIVERIES - 1) + [(200, "credited")]
    [row] = ledger_purchase_rows(user)
    assert row.amount == Decimal("250")
    assert Wallet.objects.get(user=user).balance == Decimal("250")
    assert Purchase.objects.get().transaction_id == row.pk
    assert check_ledger().ok


def test_twenty_deliveries_each_signed_anew_credit_once(user, user_client, stripe_double):
    """Stripe's retries are new deliveries (new event id, new timestamp): still one credit."""
    session = _start(user_client, stripe_double)
    signed = [signed_event("checkout.session.completed", paid(session)) for _ in range(DELIVERIES)]

    results = _at_once(DELIVERIES, lambda i: post_webhook(APIClient(), *signed[i]).json()["outcome"])

    assert results.count("credited") == 1
    assert results.count("already_paid") == DELIVERIES - 1
    assert len(ledger_purchase_rows(user)) == 1
    assert check_ledger().ok


def test_paid_and_expired_racing_leave_it_paid_and_credited_once(user, user_client, stripe_double):
    session = _start(user_client, stripe_double)
    completed = signed_event("checkout.session.completed", paid(session))
    expired = signed_event("checkout.session.expired", {**session, "status": "expired"})

    results = _at_once(
        10, lambda i: post_webhook(APIClient(), *(completed if i % 2 else expired)).status_code
    )

    assert results == [200] * 10
    assert Purchase.objects.get().status == "paid"  # money received wins over an expiry notice
    assert len(ledger_purchase_rows(user)) == 1
    assert check_ledger().ok


def test_paying_on_the_doubles_page_credits_through_a_live_server(
    user, user_client, stripe_double, live_server
):
    """The whole flow over sockets: the double's Pay button, its signed event to the server, the redirect."""
    stripe_double.webhook_url = live_server.url + WEBHOOK_PATH
    stripe_double.webhook_secret = WEBHOOK_SECRET
    session = _start(user_client, stripe_double)
    page = urllib.parse.urlsplit(session["url"])

    conn = http.client.HTTPConnection(page.hostname, page.port, timeout=30)
    conn.request("GET", page.path)
    shown = conn.getresponse().read().decode()
    conn.request("POST", page.path + "/pay", headers={"Content-Length": "0"})
    answer = conn.getresponse()
    answer.read()
    conn.close()

    assert 'id="pay"' in shown and "2.50 USD" in shown
    assert answer.status == 303
    assert answer.getheader("Location") == f"https://app.example.com/buy/?session_id={session['id']}"
    assert stripe_double.deliveries == [("checkout.session.completed", session["id"], 200)]
    purchase = Purchase.objects.get()
    assert purchase.status == "paid"
    assert Wallet.objects.get(user=user).balance == Decimal("250")
    assert check_ledger().ok
