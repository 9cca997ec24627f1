"""Reads of billing data for views, commands and other apps (no writes here)."""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Subquery

from billing.models import CreditTransaction, ModelPrice, Wallet, WalletEvent
from core.db import attnames, loaded_row
from core.money import to_decimal


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


def active_price(*, model: str) -> ModelPrice | None:
    """The active price of a model, or None when it has none (such a model cannot be used)."""
    return ModelPrice.objects.filter(model=model, active=True).first()


def active_model_names() -> list[str]:
    return list(ModelPrice.objects.filter(active=True).order_by("model").values_list("model", flat=True))


# The active price per model as this process last read it. A turn sizes a call's hold with it; the
# reservation itself reads the price active at that moment (billing.services.reserve), which is the
# price the call is charged at, and refreshes this. A price changed meanwhile costs one estimate made
# at the old price, never a charge at it.
_KNOWN_PRICES: dict[str, ModelPrice] = {}


def known_price(*, model: str) -> ModelPrice | None:
    """The model's active price as this process last saw it (read now if never; None: it has none)."""
    price = _KNOWN_PRICES.get(model)
    if price is None:
        price = active_price(model=model)
        if price is not None:
            _KNOWN_PRICES[model] = price
    return price


def price_from_row(*, model: str, row: Sequence | None) -> ModelPrice | None:
    """The model's active price from a row just read (core.db.selected's columns; None: it has
    none), kept for known_price: the kept instance itself while the row is unchanged."""
    if row is None:
        _KNOWN_PRICES.pop(model, None)
        return None
    known = _KNOWN_PRICES.get(model)
    if known is not None and [getattr(known, name) for name in attnames(ModelPrice)] == list(row):
        return known
    price = loaded_row(ModelPrice, row)
    _KNOWN_PRICES[model] = price
    return price


def last_wallet_event(*, wallet_id: int) -> WalletEvent | None:
    """The wallet's last crossing (low balance, depleted, replenished), or None."""
    return WalletEvent.objects.filter(wallet_id=wallet_id).order_by("-id").first()


def transactions_initiated_by(*, staff_user):
    """Ledger rows a staff user initiated (grants, refunds, adjustments), newest first, owner joined."""
    return (
        CreditTransaction.objects.filter(initiated_by=staff_user)
        .select_related("wallet__user")
        .order_by("-id")
    )
