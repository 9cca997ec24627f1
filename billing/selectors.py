"""Reads of billing data for views, commands and other apps (no writes here)."""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Subquery

from billing.models import CreditTransaction, ModelPrice, Wallet, WalletEvent
from billing.money import to_decimal
from config.db import loaded


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


def active_price(*, model: str) -> ModelPrice | None:
    """The active price of a model, or None when it has none (such a model cannot be used)."""
    return ModelPrice.objects.filter(model=model, active=True).first()


def active_model_names() -> list[str]:
    return list(ModelPrice.objects.filter(active=True).order_by("model").values_list("model", flat=True))


@dataclass(frozen=True)
class SpendState:
    """What a paid call reads before it is made: the model's active price and the wallet's state."""

    price: ModelPrice | None  # None: the model has no active price, so it cannot be used
    enforcement: EnforcementState | None  # None only if the user has no wallet


_PRICE_COLUMNS = [f.column for f in ModelPrice._meta.concrete_fields]
# One round trip on the turn's hot path (the ORM's two queries cost more to compile than to run).
_SPEND_STATE_SQL = (
    "SELECT w.balance, w.held, w.enforcement, "  # noqa: S608 - our tables only
    + ", ".join(f"p.{column}" for column in _PRICE_COLUMNS)
    + f" FROM (SELECT 1) AS one LEFT JOIN {Wallet._meta.db_table} w ON w.user_id = %(user_id)s"
    f" LEFT JOIN {ModelPrice._meta.db_table} p ON p.model = %(model)s AND p.active"
)


def spend_state(*, user, model: str) -> SpendState:
    """The active price of `model` and the user's wallet as the enforcement gate reads it, in one query."""
    with connection.cursor() as cursor:
        cursor.execute(_SPEND_STATE_SQL, {"user_id": user.pk, "model": model})
        balance, held, enforcement, *price = cursor.fetchone()
    state = None
    if balance is not None:
        state = EnforcementState(balance=to_decimal(balance), held=to_decimal(held), enforcement=enforcement)
    found = None
    if price[0] is not None:
        found = loaded(
            ModelPrice, **dict(zip([f.attname for f in ModelPrice._meta.concrete_fields], price, strict=True))
        )
    return SpendState(price=found, enforcement=state)


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
