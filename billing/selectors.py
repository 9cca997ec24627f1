"""Reads of billing data for views, commands and other apps (no writes here)."""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Subquery

from billing.models import CreditTransaction, Wallet
from billing.money import to_decimal


@dataclass(frozen=True)
class WalletSummary:
    balance: Decimal
    low_balance: bool
    low_balance_threshold: Decimal


def is_low_balance(balance: Decimal) -> bool:
    """`low_balance` per API.md: balance <= LOW_BALANCE_THRESHOLD (read on every call)."""
    return balance <= Decimal(settings.LOW_BALANCE_THRESHOLD)


def wallet_summary(*, user) -> WalletSummary:
    """The user's balance and low-balance flag, in one query."""
    balance = to_decimal(Wallet.objects.values_list("balance", flat=True).get(user=user))
    return WalletSummary(
        balance=balance,
        low_balance=is_low_balance(balance),
        low_balance_threshold=to_decimal(Decimal(settings.LOW_BALANCE_THRESHOLD)),
    )


@dataclass(frozen=True)
class EnforcementState:
    balance: Decimal
    held: Decimal
    enforcement: str

    @property
    def available(self) -> Decimal:
        return self.balance - self.held


def enforcement_state(*, user) -> EnforcementState:
    """What the enforcement gate reads about a wallet, in one query."""
    balance, held, enforcement = Wallet.objects.values_list("balance", "held", "enforcement").get(user=user)
    return EnforcementState(balance=to_decimal(balance), held=to_decimal(held), enforcement=enforcement)


def transactions_for_user(*, user):
    """The user's ledger rows, newest first, with the initiator joined (no N+1).

    Filtered by the wallet's id (a subquery), not through a join on the wallet's user: the planner
    then walks the (wallet, -id) index for this one wallet, so page 1 and page 500 of a large ledger
    cost the same, instead of scanning everyone's newer rows backwards by id.
    """
    wallet_id = Wallet.objects.filter(user=user).values("id")[:1]
    return (
        CreditTransaction.objects.filter(wallet_id=Subquery(wallet_id))
        .select_related("initiated_by")
        .order_by("-id")
    )


def transactions_initiated_by(*, staff_user):
    """Ledger rows a staff user initiated (grants, refunds, adjustments), newest first, owner joined."""
    return (
        CreditTransaction.objects.filter(initiated_by=staff_user)
        .select_related("wallet__user")
        .order_by("-id")
    )
