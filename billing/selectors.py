"""Reads of billing data for views, commands and other apps (no writes here)."""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import FilteredRelation, Q, Subquery

from billing.models import (
    CreditTransaction,
    LLMCallEvent,
    ModelPrice,
    SpendLimit,
    Wallet,
    WalletEvent,
)
from billing.periods import next_reset, period_start
from core.db import attnames, loaded_row
from core.money import quantize, to_decimal


@dataclass(frozen=True)
class WalletSummary:
    balance: Decimal
    low_balance: bool
    low_balance_threshold: Decimal


def low_balance_threshold() -> Decimal:
    """The low-balance line: LOW_BALANCE_THRESHOLD as money (6 places), read on every call.

    The one reader of the setting: the `low_balance` flags, the admin's filter and the crossings
    that record `wallet.low_balance` all compare with this value, so they never disagree.
    """
    return quantize(Decimal(settings.LOW_BALANCE_THRESHOLD))


def is_low_balance(balance: Decimal) -> bool:
    """`low_balance` per API.md: balance <= LOW_BALANCE_THRESHOLD."""
    return balance <= low_balance_threshold()


def wallet_summary(*, user) -> WalletSummary:
    """The user's balance and low-balance flag, in one query."""
    balance = to_decimal(Wallet.objects.values_list("balance", flat=True).get(user=user))
    return WalletSummary(
        balance=balance,
        low_balance=is_low_balance(balance),
        low_balance_threshold=low_balance_threshold(),
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


def limit_spending(*, spend_limit: SpendLimit, held: Decimal | None = None) -> Decimal:
    """A limit's spending in its current period: its charges since the period began (none when its
    counter belongs to a past period) plus open holds (a key's own; pass the wallet's `held` for a cap)."""
    charged = spend_limit.spent if spend_limit.period_start == period_start(spend_limit.period) else 0
    return to_decimal(Decimal(charged) + (spend_limit.held if held is None else held))


def spend_caps(*, user) -> list[SpendLimit]:
    """The wallet's spending caps (the user's, staff's), with the wallet selected."""
    return list(
        SpendLimit.objects.filter(wallet__user=user, kind__in=["user_cap", "staff_cap"])
        .select_related("wallet")
        .order_by("kind")
    )


def calls_of_limit(*, spend_limit_id: int):
    """The calls made with an API key (its limit), newest first."""
    return LLMCallEvent.objects.filter(spend_limit_id=spend_limit_id).order_by("-created_at", "-id")


def active_prices() -> list[ModelPrice]:
    """The active, priced models, by name."""
    return list(ModelPrice.objects.filter(active=True).order_by("model"))


def wallet_balances(*, user) -> tuple[Decimal, Decimal]:
    """(balance, held) of the user's wallet, in one query."""
    balance, held = Wallet.objects.values_list("balance", "held").get(user=user)
    return to_decimal(balance), to_decimal(held)


@dataclass(frozen=True)
class CapState:
    amount: Decimal
    period: str
    spending: Decimal  # charges in the current period plus the wallet's open holds
    reset_at: object  # datetime


@dataclass(frozen=True)
class WalletWithCaps:
    summary: WalletSummary
    spend_cap: CapState | None  # the user's own
    staff_spend_cap: CapState | None  # staff's, which the user cannot change


_CAP_COLUMNS = ("amount", "period", "spent", "period_start")


def wallet_with_caps(*, user) -> WalletWithCaps:
    """The wallet summary and its spending caps with the period's spending, in one query."""
    caps = {
        name: FilteredRelation("spend_limits", condition=Q(spend_limits__kind=kind))
        for name, kind in (("user_cap", "user_cap"), ("staff_cap", "staff_cap"))
    }
    columns = ["balance", "held"] + [f"{name}__{column}" for name in caps for column in _CAP_COLUMNS]
    row = Wallet.objects.annotate(**caps).values_list(*columns).get(user=user)
    balance, held = to_decimal(row[0]), to_decimal(row[1])

    def cap(values) -> CapState | None:
        amount, period, spent, start = values
        if amount is None:
            return None
        charged = spent if start == period_start(period) else Decimal(0)
        return CapState(
            amount=to_decimal(amount),
            period=period,
            spending=to_decimal(charged + held),
            reset_at=next_reset(period),
        )

    summary = WalletSummary(
        balance=balance,
        low_balance=is_low_balance(balance),
        low_balance_threshold=low_balance_threshold(),
    )
    return WalletWithCaps(summary=summary, spend_cap=cap(row[2:6]), staff_spend_cap=cap(row[6:10]))


def purchases_for_user(*, user):
    """The user's purchases, newest first (credits bought through Stripe Checkout)."""
    from billing.models import Purchase

    return Purchase.objects.filter(user=user).order_by("-id")
