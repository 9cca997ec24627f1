"""Stripe, through the official library: a Checkout Session created for a purchase, and webhook events verified.

The only module that talks to Stripe. Creating a session is a network call: callers make it outside any
database transaction (billing.services.purchases does). STRIPE_API_BASE points the library at Stripe
or at the local double (scripts/stripe_double.py); nothing else here knows which.
"""

import logging
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import stripe
from django.conf import settings

from billing.exceptions import BillingError, InvalidWebhookSignature, PaymentProviderFailed

logger = logging.getLogger(__name__)

# Seconds to wait for Stripe per attempt; the library retries a failed connection this many times,
# with one idempotency key it makes per call, so a retried create never makes a second session. (No
# key of ours: purchase ids repeat across databases, and environments may share a test-mode account.)
TIMEOUT_SECONDS = 20
NETWORK_RETRIES = 2
# How Stripe counts amounts (https://docs.stripe.com/currencies): in each currency's minor unit, which
# is the whole unit for the zero-decimal currencies and a thousandth for the three-decimal ones. Two
# special cases make what can be charged coarser than the unit: a three-decimal amount must end in 0
# (so whole hundredths), and ISK, a two-decimal currency in the API, is charged in whole krónur only.
ZERO_DECIMAL_CURRENCIES = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL_CURRENCIES = frozenset("bhd jod kwd omr tnd".split())
WHOLE_UNITS_CHARGED = ZERO_DECIMAL_CURRENCIES | {"isk"}
STRIPE_API = "https://api.stripe.com"  # Stripe's own API address (STRIPE_API_BASE's default)
# The smallest amount Stripe charges in each currency it lists (https://docs.stripe.com/currencies,
# "Minimum and maximum charge amounts"; the settlement currency may raise it). Below it, creating
# the Checkout Session fails, so a purchase that small could never be paid.
STRIPE_MINIMUM_CHARGE = {
    currency: Decimal(amount)
    for currency, amount in (
        ("usd", "0.50"), ("aed", "2.00"), ("aud", "0.50"), ("bgn", "1.00"), ("brl", "0.50"),
        ("cad", "0.50"), ("chf", "0.50"), ("czk", "15.00"), ("dkk", "2.50"), ("eur", "0.50"),
        ("gbp", "0.30"), ("hkd", "4.00"), ("huf", "175.00"), ("inr", "0.50"), ("jpy", "50"),
        ("mxn", "10"), ("myr", "2"), ("nok", "3.00"), ("nzd", "0.50"), ("pln", "2.00"),
        ("ron", "2.00"), ("sek", "3.00"), ("sgd", "0.50"), ("thb", "10"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class CheckoutSession:
    """What the app keeps of a created session: its id and the hosted page the user is sent to."""

    id: str
    url: str


def minor_units(amount: Decimal, currency: str) -> int:
    """An amount in the currency's minor unit, as Stripe's `unit_amount` and `amount_total` count it.

    Cents for most currencies, whole yen for the zero-decimal ones, fils (thousandths) for the
    three-decimal ones: 1.25 USD is 125, 125 JPY is 125, 1.25 KWD is 1250.
    """
    return int(amount.scaleb(minor_unit_places(currency)).to_integral_value(rounding=ROUND_HALF_UP))


def minor_unit_places(currency: str) -> int:
    """The decimal places of a currency's minor unit: 2 for most, 0 for yen and the like, 3 for dinars."""
    currency = currency.lower()
    return 0 if currency in ZERO_DECIMAL_CURRENCIES else 3 if currency in THREE_DECIMAL_CURRENCIES else 2


def format_currency(amount: Decimal, currency: str) -> str:
    """An amount of money as people read it in its currency: "5.00 USD", "500 JPY", "1.250 KWD"."""
    return f"{amount:.{minor_unit_places(currency)}f} {currency.upper()}"


def currency_amount(*, credits: int) -> Decimal:
    """What `credits` cost in CREDIT_CURRENCY, rounded (half up) to what Stripe can charge.

    Whole units for the zero-decimal currencies and ISK, hundredths for every other (a three-decimal
    currency's amount must end in 0 at Stripe).
    """
    places = 0 if settings.CREDIT_CURRENCY in WHOLE_UNITS_CHARGED else 2
    return (Decimal(credits) * settings.CREDIT_UNIT_PRICE).quantize(
        Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP
    )


def _client() -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_API_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        max_network_retries=NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=TIMEOUT_SECONDS),
    )


def create_session(
    *,
    purchase_id: int,
    reference: str,
    user_id: int,
    credits: int,
    amount: Decimal,
    currency: str,
    success_url: str,
    cancel_url: str,
    customer_email: str = "",
) -> CheckoutSession:
    """Create a `payment` Checkout Session naming the purchase (client_reference_id, metadata); network, no transaction."""
    params = {
        "mode": "payment",
        "client_reference_id": reference,
        "metadata": {
            "reference": reference,
            "purchase_id": str(purchase_id),
            "user_id": str(user_id),
            "credits": str(credits),
        },
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": currency,
                    "unit_amount": minor_units(amount, currency),
                    "product_data": {"name": f"{credits} credits"},
                },
            }
        ],
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    if customer_email:
        params["customer_email"] = customer_email
    try:
        session = _client().v1.checkout.sessions.create(params=params)
    except stripe.StripeError as exc:
        logger.error(
            "stripe checkout session not created",
            extra={
                "purchase_id": purchase_id,
                "error": type(exc).__name__,
                "stripe_message": getattr(exc, "user_message", None) or str(exc)[:300],
                "http_status": getattr(exc, "http_status", None),
            },
        )
        raise PaymentProviderFailed(
            "The payment provider could not start a checkout just now; nothing was charged. Try again in a minute."
        ) from exc
    return CheckoutSession(id=session.id, url=session.url)


def verify_event(*, payload: bytes, signature: str | None) -> dict:
    """The event Stripe signed (Stripe-Signature over this exact body, within the library's tolerance), as a dict."""
    try:
        event = stripe.Webhook.construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET)
    except stripe.SignatureVerificationError as exc:
        raise InvalidWebhookSignature(
            "The Stripe-Signature header is missing, does not match this body, or is too old; "
            "nothing was recorded. Check STRIPE_WEBHOOK_SECRET against the endpoint's signing secret."
        ) from exc
    except (ValueError, AttributeError, TypeError, RecursionError) as exc:
        # Signed, but not a JSON object: the library cannot read `[]`, `"x"` or `null` as an event
        # (AttributeError), nor a body that is not JSON (ValueError; UnicodeDecodeError is one too),
        # nor JSON nested deeper than the decoder's recursion (RecursionError).
        raise BillingError("The webhook body is not a Stripe event; nothing was recorded.") from exc
    return event.to_dict()
