"""The 402 of credit enforcement: raised when a turn's reservation (billing.services.reserve) is refused."""

from decimal import Decimal

from rest_framework import status
from rest_framework.exceptions import APIException, ErrorDetail

from billing.exceptions import InsufficientCredits
from core.money import format_money

INSUFFICIENT_CREDITS = "Insufficient credits. Please top up your account."


class PaymentRequired(APIException):
    """402 with the body API.md pins: detail, code "insufficient_credits", balance, and available."""

    status_code = status.HTTP_402_PAYMENT_REQUIRED
    default_detail = INSUFFICIENT_CREDITS
    default_code = "insufficient_credits"

    def __init__(self, *, balance: Decimal, available: Decimal):
        super().__init__()
        self.balance = balance
        self.detail = {
            "detail": ErrorDetail(INSUFFICIENT_CREDITS, code=self.default_code),
            "code": self.default_code,
            "balance": format_money(balance),
            "available": format_money(available),
        }

    @classmethod
    def from_refusal(cls, refusal: InsufficientCredits) -> "PaymentRequired":
        return cls(balance=refusal.balance, available=refusal.available)
