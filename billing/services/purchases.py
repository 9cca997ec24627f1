"""Buying credits through Stripe Checkout: the pending purchase, its Checkout Session, and the webhook that credits it once.

The order keeps the network out of every transaction: the pending purchase is committed first, then
the session is created (a network call, no transaction open, no lock held), then its id is recorded.
The signed webhook may arrive before that last step: it finds the purchase by the reference the session
carries (client_reference_id, metadata), not only by the session id. Crediting locks the purchase row
and appends the ledger row in the transaction that marks it paid, so however often or concurrently an
event is delivered, one session is credited once (and the ledger's unique idempotency key backs that).
"""

import logging
import re
from collections.abc import Callable, Mapping
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils.crypto import constant_time_compare, salted_hmac

from billing import stripe_checkout
from billing.exceptions import InvalidPurchase, PaymentProviderFailed, PaymentsDisabled
from billing.models import CreditTransaction, Purchase
from billing.services.ledger import append
from core.money import AmountError, parse_amount

logger = logging.getLogger(__name__)

URL_MAX = 2000
_REFERENCE_RE = re.compile(r"purchase-([0-9]{1,18})-([0-9a-f]{16})", re.ASCII)
# Stripe replaces this in success_url with the session's id; it is not a valid URL character as typed.
SESSION_ID_TEMPLATE = "{CHECKOUT_SESSION_ID}"
# http(s), a host name or address (an intranet name too: Stripe checks the rest), then no blanks or
# backslashes. The OpenAPI schema states the same pattern.
RETURN_URL_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][^\s\\]*)?$"
RETURN_URL_RE = re.compile(RETURN_URL_PATTERN)


def payments_enabled() -> bool:
    return bool(settings.STRIPE_API_KEY)


def require_payments() -> None:
    """Raise PaymentsDisabled (503) unless STRIPE_API_KEY is set."""
    if not payments_enabled():
        raise PaymentsDisabled(
            "Buying credits is not available on this server (no payment provider is configured); "
            "ask support to add credits."
        )


def validate_credits(raw) -> int:
    """A whole number of credits (a JSON integer, or a string of digits) within PURCHASE_MIN/MAX_CREDITS."""
    bounds = f"between {settings.PURCHASE_MIN_CREDITS} and {settings.PURCHASE_MAX_CREDITS}"
    try:
        value = parse_amount(raw)
    except AmountError as exc:
        raise InvalidPurchase(f"Give a whole number of credits {bounds}, e.g. 500.", field="credits") from exc
    if value != value.to_integral_value():
        raise InvalidPurchase(
            f"Credits are bought whole: give a whole number {bounds}, e.g. 500.", field="credits"
        )
    if not settings.PURCHASE_MIN_CREDITS <= value <= settings.PURCHASE_MAX_CREDITS:
        raise InvalidPurchase(f"Ensure this value is {bounds} credits.", field="credits")
    return int(value)


def validate_return_url(raw, *, field: str) -> str:
    """An absolute http(s) URL of at most 2000 characters (success_url may hold {CHECKOUT_SESSION_ID})."""
    message = (
        f"Give the absolute http or https address to send the buyer back to (at most {URL_MAX} characters)."
    )
    if not isinstance(raw, str) or not raw or len(raw) > URL_MAX:
        raise InvalidPurchase(message, field=field)
    if not RETURN_URL_RE.fullmatch(raw):
        raise InvalidPurchase(message, field=field)
    return raw


def buy_credits(
    *, user, credits, success_url, cancel_url, before_start: Callable[[], None] | None = None
) -> Purchase:
    """Start a purchase: the pending row committed, then its Checkout Session created (no transaction open), then recorded.

    Raises PaymentsDisabled without STRIPE_API_KEY, InvalidPurchase on bad input (nothing written),
    PaymentProviderFailed when Stripe refuses or cannot be reached (the purchase is left expired,
    unpayable). The returned purchase carries `checkout_url`. `before_start()` runs once the input
    is valid, before anything is written (the callers count purchases started there: a refused
    request is not one); what it raises stops the purchase.
    """
    require_payments()
    credits = validate_credits(credits)
    success_url = validate_return_url(success_url, field="success_url")
    cancel_url = validate_return_url(cancel_url, field="cancel_url")
    amount = stripe_checkout.currency_amount(credits=credits)
    if amount <= 0:
        raise InvalidPurchase(
            f"{credits} credits cost less than the smallest amount that can be charged; buy more.",
            field="credits",
        )
    if before_start is not None:
        before_start()
    # Durable: refused inside a caller's transaction, so this row is committed and the network call
    # below holds no transaction open (and no lock).
    with transaction.atomic(durable=True):
        purchase = Purchase.objects.create(
            user=user, credits=credits, amount=amount, currency=settings.CREDIT_CURRENCY
        )
    try:
        session = stripe_checkout.create_session(
            purchase_id=purchase.pk,
            reference=reference(purchase.pk),
            user_id=user.pk,
            credits=credits,
            amount=amount,
            currency=purchase.currency,
            success_url=success_url,
            cancel_url=cancel_url,
            customer_email=user.email,
        )
    except PaymentProviderFailed:
        # Nobody has this checkout's address, so nobody can pay it: it will never be credited.
        Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PENDING).update(
            status=Purchase.Status.EXPIRED
        )
        raise
    # The webhook may have named the session already (it arrived first); the id stays the one it wrote.
    Purchase.objects.filter(pk=purchase.pk).update(
        checkout_url=session.url,
        stripe_session_id=Coalesce(F("stripe_session_id"), Value(session.id)),
    )
    purchase.refresh_from_db()
    logger.info(
        "purchase started",
        extra={
            "purchase_id": purchase.pk,
            "user_id": user.pk,
            "credits": credits,
            "amount": str(amount),
            "currency": purchase.currency,
            "stripe_session_id": purchase.stripe_session_id,
        },
    )
    return purchase


def reference(purchase_id: int) -> str:
    """The reference a purchase's session carries (client_reference_id and metadata.reference): what the webhook finds it by.

    "purchase-<id>-<tag>", the tag an HMAC of the id with SECRET_KEY: purchase ids repeat across
    databases, and a session made by another installation on the same Stripe account must not name
    a purchase here.
    """
    return f"purchase-{purchase_id}-{_tag(purchase_id)}"


def _tag(purchase_id: int) -> str:
    return salted_hmac("billing.purchase-reference", str(purchase_id), algorithm="sha256").hexdigest()[:16]


def _purchase_id(session: Mapping) -> int | None:
    """The purchase a session names by its reference (client_reference_id, else metadata.reference), if it is ours."""
    metadata = session.get("metadata")
    candidates = (
        session.get("client_reference_id"),
        metadata.get("reference") if isinstance(metadata, Mapping) else None,
    )
    for candidate in candidates:
        match = _REFERENCE_RE.fullmatch(candidate) if isinstance(candidate, str) else None
        if match and constant_time_compare(match.group(2), _tag(int(match.group(1)))):
            return int(match.group(1))
    return None


# The ledger row of a paid session is keyed by its id: an id must fit the purchase's column and the key's.
PAID_KEY_PREFIX = "stripe-checkout:"
_SESSION_ID_MAX = min(
    Purchase._meta.get_field("stripe_session_id").max_length,
    CreditTransaction._meta.get_field("idempotency_key").max_length - len(PAID_KEY_PREFIX),
)


def _session_id(session: Mapping) -> str | None:
    """The session's id when it can be one of Stripe's (text that fits the column, no NUL), else None."""
    session_id = session.get("id")
    if not isinstance(session_id, str) or not 0 < len(session_id) <= _SESSION_ID_MAX or "\x00" in session_id:
        return None
    return session_id


def _locked_purchase(session: Mapping) -> Purchase | None:
    """The purchase a session is for, locked until the caller's transaction ends; None if there is none."""
    session_id = _session_id(session)
    locked = Purchase.objects.select_for_update()
    purchase_id = _purchase_id(session)
    purchase = locked.filter(pk=purchase_id).first() if purchase_id is not None else None
    if purchase is None and session_id is not None:
        purchase = locked.filter(stripe_session_id=session_id).first()
    if purchase is not None and (session_id is None or purchase.stripe_session_id not in (None, session_id)):
        logger.error(
            "stripe session names a purchase recorded with another session; ignored",
            extra={"purchase_id": purchase.pk, "stripe_session_id": session_id},
        )
        return None
    return purchase


def _unknown(session: Mapping, event_type: str) -> str:
    logger.warning(
        "stripe event for an unknown checkout session; nothing recorded",
        extra={
            "stripe_session_id": session.get("id"),
            "client_reference_id": session.get("client_reference_id"),
            "event_type": event_type,
        },
    )
    return "unknown_session"


def complete_checkout(*, session: Mapping, event_type: str = "checkout.session.completed") -> str:
    """Credit a paid session's purchase exactly once (one `purchase` ledger row); say what happened.

    Outcomes: "credited", "already_paid", "awaiting_payment" (completed, but a delayed payment method
    has not paid yet), "unknown_session", "amount_mismatch" (not what the purchase asked; not credited).
    """
    session_id = _session_id(session)
    if session.get("payment_status") != "paid":
        return "awaiting_payment"
    if session_id is None:
        return _unknown(session, event_type)
    with transaction.atomic():
        purchase = _locked_purchase(session)
        if purchase is None:
            return _unknown(session, event_type)
        if purchase.status == Purchase.Status.PAID:
            return "already_paid"
        expected = stripe_checkout.minor_units(purchase.amount, purchase.currency)
        if (
            session.get("amount_total") != expected
            or str(session.get("currency", "")).lower() != purchase.currency
        ):
            logger.error(
                "paid stripe session does not match its purchase; not credited",
                extra={
                    "purchase_id": purchase.pk,
                    "stripe_session_id": session_id,
                    "amount_total": session.get("amount_total"),
                    "currency": session.get("currency"),
                    "expected_amount_total": expected,
                    "expected_currency": purchase.currency,
                },
            )
            return "amount_mismatch"
        if purchase.status == Purchase.Status.EXPIRED:
            # Money received is credited: a session marked expired here (its create call failed) was paid after all.
            logger.warning(
                "expired purchase paid; credited",
                extra={"purchase_id": purchase.pk, "stripe_session_id": session_id},
            )
        row = append(
            user_id=purchase.user_id,
            kind=CreditTransaction.Kind.PURCHASE,
            amount=Decimal(purchase.credits),
            reason=f"Stripe Checkout {session_id}",
            idempotency_key=f"{PAID_KEY_PREFIX}{session_id}",
        )
        purchase.status = Purchase.Status.PAID
        purchase.transaction = row
        purchase.paid_at = row.created_at
        purchase.stripe_session_id = session_id
        purchase.save(update_fields=["status", "transaction", "paid_at", "stripe_session_id", "updated_at"])
    logger.info(
        "purchase paid",
        extra={
            "purchase_id": purchase.pk,
            "user_id": purchase.user_id,
            "credits": purchase.credits,
            "transaction_id": row.pk,
            "stripe_session_id": session_id,
        },
    )
    return "credited"


def expire_checkout(*, session: Mapping, event_type: str = "checkout.session.expired") -> str:
    """Mark a pending purchase expired when its session expired; a paid one stays paid. Say what happened."""
    with transaction.atomic():
        purchase = _locked_purchase(session)
        if purchase is None:
            return _unknown(session, event_type)
        if purchase.status != Purchase.Status.PENDING:
            return f"already_{purchase.status}"
        purchase.status = Purchase.Status.EXPIRED
        purchase.stripe_session_id = _session_id(session)
        purchase.save(update_fields=["status", "stripe_session_id", "updated_at"])
    logger.info(
        "purchase expired",
        extra={"purchase_id": purchase.pk, "stripe_session_id": purchase.stripe_session_id},
    )
    return "expired"


# checkout.session.async_payment_succeeded: a delayed payment method (a bank debit) paid after completion.
_HANDLERS = {
    "checkout.session.completed": complete_checkout,
    "checkout.session.async_payment_succeeded": complete_checkout,
    "checkout.session.expired": expire_checkout,
}


def handle_stripe_webhook(*, payload: bytes, signature: str | None) -> str:
    """Verify a webhook's Stripe-Signature (InvalidWebhookSignature: nothing written), then act on its event once; say what happened."""
    if not settings.STRIPE_WEBHOOK_SECRET:
        raise PaymentsDisabled(
            "This server has no STRIPE_WEBHOOK_SECRET, so it cannot verify Stripe's events; nothing was recorded."
        )
    event = stripe_checkout.verify_event(payload=payload, signature=signature)
    event_type = event.get("type")
    handler = _HANDLERS.get(event_type) if isinstance(event_type, str) else None
    if handler is None:
        return "ignored"
    data = event.get("data")
    session = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(session, Mapping):
        return "ignored"  # signed by Stripe, yet no session in it: nothing to act on
    return handler(session=session, event_type=event_type)
