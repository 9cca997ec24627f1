"""The credit enforcement gate: a DRF permission that refuses a paid call on an empty wallet with 402."""

import logging
from decimal import Decimal

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ErrorDetail
from rest_framework.permissions import SAFE_METHODS, BasePermission

from billing.money import format_money
from billing.selectors import wallet_summary

logger = logging.getLogger(__name__)

INSUFFICIENT_CREDITS = "Insufficient credits. Please top up your account."


class PaymentRequired(APIException):
    """402 with the body API.md pins: detail, code "insufficient_credits", and the balance."""

    status_code = status.HTTP_402_PAYMENT_REQUIRED
    default_detail = INSUFFICIENT_CREDITS
    default_code = "insufficient_credits"

    def __init__(self, *, balance: Decimal):
        super().__init__()
        self.balance = balance
        self.detail = {
            "detail": ErrorDetail(INSUFFICIENT_CREDITS, code=self.default_code),
            "code": self.default_code,
            "balance": format_money(balance),
        }


def enforcement_enabled() -> bool:
    """CREDIT_ENFORCEMENT_ENABLED, read on every request so an override or reload takes effect."""
    return bool(settings.CREDIT_ENFORCEMENT_ENABLED)


def ensure_can_spend(*, user) -> None:
    """Raise PaymentRequired when enforcement is on and the user's balance is <= 0."""
    if not enforcement_enabled():
        return
    balance = wallet_summary(user=user).balance
    if balance <= 0:
        logger.warning(
            "paid call refused: insufficient credits",
            extra={"user_id": user.pk, "balance": format_money(balance)},
        )
        raise PaymentRequired(balance=balance)


class CreditEnforcement(BasePermission):
    """On a paid (unsafe) request: refuse with 402 when enforcement is on and the wallet is empty.

    A cheap pre-check that stops a plainly empty wallet before any work; it reads nothing at all
    when enforcement is off. Put it after the authentication and ownership checks.
    """

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS or not request.user or not request.user.is_authenticated:
            return True
        ensure_can_spend(user=request.user)
        return True
