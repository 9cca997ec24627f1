"""The credit enforcement gate: a DRF permission that refuses a paid call on an empty wallet with 402."""

import logging
from decimal import Decimal

from rest_framework import status
from rest_framework.exceptions import APIException, ErrorDetail
from rest_framework.permissions import SAFE_METHODS, BasePermission

from billing.exceptions import InsufficientCredits
from billing.money import format_money
from billing.selectors import EnforcementState, enforcement_state
from billing.services import enforcement_applies

logger = logging.getLogger(__name__)

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


def ensure_can_spend(*, user, state: EnforcementState | None = None) -> None:
    """Raise PaymentRequired when enforcement applies to the wallet and nothing is available.

    The cheap pre-check (one read, or none when the caller read `state` already):
    billing.services.reserve() is the authoritative gate.
    """
    if state is None:
        state = enforcement_state(user=user)
    if not enforcement_applies(state.enforcement) or state.available > 0:
        return
    logger.warning(
        "paid call refused: insufficient credits",
        extra={
            "user_id": user.pk,
            "balance": format_money(state.balance),
            "available": format_money(state.available),
        },
    )
    raise PaymentRequired(balance=state.balance, available=state.available)


class CreditEnforcement(BasePermission):
    """On a paid (unsafe) request: refuse with 402 when enforcement is on and the wallet is empty.

    An object permission: the view checks it on what it loaded for the paid call, which carries the
    wallet's state as `enforcement` (an EnforcementState; read here when absent). A cheap pre-check
    that stops a plainly empty wallet before any work; billing.services.reserve() is the real gate.
    """

    def has_object_permission(self, request, view, obj) -> bool:
        if request.method in SAFE_METHODS or not request.user or not request.user.is_authenticated:
            return True
        ensure_can_spend(user=request.user, state=getattr(obj, "enforcement", None))
        return True
