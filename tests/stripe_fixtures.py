"""Fixtures for buying credits: the local Stripe double on a free loopback port, and events signed as Stripe signs them."""

import time

import pytest

from scripts.stripe_double import StripeDouble, event_payload, sign

WEBHOOK_PATH = "/api/v1/payments/stripe/webhook"
WEBHOOK_SECRET = "whsec_test_secret_for_the_suite"


@pytest.fixture
def stripe_double(settings):
    """The double, started in-process; the settings point the stripe library at it. Events are sent by the test."""
    double = StripeDouble().start()
    settings.STRIPE_API_KEY = "sk_test_double"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = double.base_url
    yield double
    double.stop()


def signed_event(
    event_type: str, session: dict, *, secret: str = WEBHOOK_SECRET, timestamp=None
) -> tuple[str, str]:
    """(payload, Stripe-Signature) for an event about `session`, signed as Stripe signs it."""
    payload = event_payload(event_type, StripeDouble.public(session))
    return payload, sign(payload, secret, timestamp)


def post_webhook(client, payload: str, signature: str | None):
    headers = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
    return client.post(WEBHOOK_PATH, data=payload, content_type="application/json", **headers)


def deliver(client, event_type: str, session: dict, **kwargs):
    """Send one signed event to the webhook through `client`; the response."""
    payload, signature = signed_event(event_type, session, **kwargs)
    return post_webhook(client, payload, signature)


def paid(session: dict) -> dict:
    """The session as Stripe reports it once paid (checkout.session.completed)."""
    return {**session, "status": "complete", "payment_status": "paid"}


def stale_timestamp() -> int:
    """A signature time just past the library's tolerance (300 s)."""
    return int(time.time()) - 301


def ledger_purchase_rows(user) -> list:
    from billing.models import CreditTransaction

    return list(CreditTransaction.objects.filter(wallet__user=user, kind="purchase"))


def table_counts() -> dict:
    """Rows in the tables a purchase or a webhook could write: to prove that nothing was written."""
    from billing.models import CreditTransaction, Purchase, WalletEvent

    return {
        "purchases": Purchase.objects.count(),
        "ledger": CreditTransaction.objects.count(),
        "events": WalletEvent.objects.count(),
        "paid": Purchase.objects.filter(status="paid").count(),
        "expired": Purchase.objects.filter(status="expired").count(),
    }
