"""Billing's domain errors: plain exceptions that core's handler maps to HTTP and commands to one line."""

from decimal import Decimal

from core.errors import DomainError
from core.money import format_money

# The 402's words (API.md pins them); billing.schema documents the same constant.
INSUFFICIENT_CREDITS = "Insufficient credits. Please top up your account."


class BillingError(DomainError):
    """A refused billing operation; nothing was written."""


class InvalidAmount(BillingError):
    code = "invalid_amount"


class GrantLimitExceeded(InvalidAmount):
    """More than SUPPORT_GRANT_LIMIT at once, by staff without the permission to grant beyond it."""

    code = "grant_limit_exceeded"


class AllowancePeriodLocked(BillingError):
    """An issued allowance's period edited: its issues are keyed by period start, so a new period type
    would start a period the users were already issued in (a second lot in it)."""

    code = "allowance_period_locked"


class InvalidGrant(BillingError):
    code = "invalid_grant"


class InvalidRefund(BillingError):
    """Not a debit, or nothing of it is left to refund."""

    code = "invalid_refund"


class InitiatorNotStaff(BillingError):
    status_code = 400
    code = "initiator_not_staff"


class IdempotencyConflict(BillingError):
    status_code = 409
    code = "idempotency_conflict"


class PriceNotFound(BillingError):
    code = "price_not_found"


class PartitionRefused(BillingError):
    """A call event partition that cannot be detached as asked (retention, manage.py detach_call_events)."""

    code = "partition_refused"


class CallTooCostly(BillingError):
    """A call whose worst case (its prompt and output cap at the model's price) is more than one call may
    hold (billing.pricing.CALL_COST_MAX): held or charged, it would not fit a money column. Nothing is
    reserved and no model is called; a 400, since the request (or the price) is what must change."""

    code = "call_too_costly"

    def __init__(
        self,
        *,
        model: str,
        cost: Decimal | None,
        input_tokens: int,
        output_tokens: int,
        input_price: Decimal,
        output_price: Decimal,
        limit: int,
    ):
        worst = "more than a credit amount can hold" if cost is None else f"{format_money(cost)} credits"
        super().__init__(
            f"A call to {model!r} could cost {worst}: {input_tokens} prompt tokens at "
            f"{format_money(input_price)} and up to {output_tokens} output tokens (max_tokens) at "
            f"{format_money(output_price)} credits per 1k, more than the {limit} credits one "
            "call may hold. Send a shorter prompt or a lower max_tokens, or ask an operator to check "
            "the model's price and LLM_MAX_OUTPUT_TOKENS."
        )
        self.model, self.cost = model, cost


class InsufficientCredits(BillingError):
    """Enforcement refused a reservation: the wallet has nothing available (balance - held <= 0, leaving
    out lots past their expiry that are not swept yet).

    Its 402 body is the one API.md pins: detail, code, and the wallet's balance and available credits.
    """

    status_code = 402
    code = "insufficient_credits"

    def __init__(self, *, balance: Decimal, available: Decimal):
        super().__init__(INSUFFICIENT_CREDITS)
        self.balance = balance
        self.available = available

    def facts(self) -> dict:
        return {"balance": format_money(self.balance), "available": format_money(self.available)}


class LimitReached(InsufficientCredits):
    """A reservation refused by a spend limit: an API key's limit or the wallet's spending cap.

    The period's spending (charges plus open holds) has reached the limit; `reset_at` is when the
    period ends (None for a key limit that never resets). Enforced whatever CREDIT_ENFORCEMENT_ENABLED says.
    """

    def __init__(
        self,
        *,
        source: str,
        balance: Decimal,
        available: Decimal,
        limit: Decimal,
        spending: Decimal,
        reset_at,
    ):
        super().__init__(balance=balance, available=available)
        self.source, self.limit, self.spending, self.reset_at = source, limit, spending, reset_at
        if source == "spend_cap":
            self.code = "spend_cap_reached"
            self.message = (
                f"Your spending cap of {format_money(limit)} credits for this period is reached; "
                + ("it resets at " + reset_at.isoformat() + ". " if reset_at else "")
                + "Raise your cap (if it is yours to raise) or wait for the next period."
            )
        else:
            self.code = "key_limit_reached"
            self.message = (
                f"This API key's spending limit of {format_money(limit)} credits is reached"
                + (f"; it resets at {reset_at.isoformat()}." if reset_at else ".")
                + " Raise the key's limit or use another key."
            )
        self.args = (self.message,)

    def facts(self) -> dict:
        facts = {**super().facts(), "limit_source": self.source, "limit": format_money(self.limit)}
        if self.reset_at is not None:
            facts["reset_at"] = self.reset_at.isoformat()
        return facts


class InvalidLimit(BillingError):
    code = "invalid_limit"


class InvalidPurchase(BillingError):
    """A purchase request out of bounds or malformed (credits, return URLs); nothing was written."""

    code = "invalid_purchase"


class PaymentsDisabled(BillingError):
    """Buying credits is off here: STRIPE_API_KEY (or, for the webhook, STRIPE_WEBHOOK_SECRET) is not set."""

    status_code = 503
    code = "payments_disabled"


class PaymentProviderFailed(BillingError):
    """Stripe refused or failed the Checkout Session's creation; the purchase stays unpayable (expired)."""

    status_code = 502
    code = "payment_provider_error"


class InvalidWebhookSignature(BillingError):
    """A webhook whose Stripe-Signature is missing, wrong, stale or for another body; nothing was written."""

    code = "invalid_signature"
