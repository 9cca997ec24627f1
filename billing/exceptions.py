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


class InsufficientCredits(BillingError):
    """Enforcement refused a reservation: the wallet has nothing available (balance - held <= 0).

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
