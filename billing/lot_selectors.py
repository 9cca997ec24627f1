"""Reads of a wallet's credit lots: the live ones in burn order, the next expiry, allowances' issues (no writes here)."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import BooleanField, ExpressionWrapper, F, Q
from django.utils import timezone

from billing.models import CreditLot
from core.money import to_decimal

# The pinned burn order, as the ORM spells it; the database function billing_burn_lots spells the
# same order in SQL (migration 0020): priority, soonest expiry (never last), promotional before
# paid, then effective_at, then id.
BURN_ORDER = ("priority", F("expires_at").asc(nulls_last=True), "is_paid", "effective_at", "id")


@dataclass(frozen=True)
class NextExpiry:
    at: datetime
    amount: Decimal  # what is left of the lots that expire at that instant


def _in_burn_order(lots):
    return lots.annotate(
        is_paid=ExpressionWrapper(Q(category=CreditLot.Category.PAID), output_field=BooleanField())
    ).order_by(*BURN_ORDER)


def live_lots(*, wallet_id: int | None = None, user=None, now: datetime | None = None) -> list[CreditLot]:
    """The wallet's (by id, or its user's) live lots (something left, not expired), in the order a charge burns them."""
    now = now or timezone.now()
    owner = {"wallet_id": wallet_id} if wallet_id is not None else {"wallet__user": user}
    lots = CreditLot.objects.filter(**owner, remaining__gt=0).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    return list(_in_burn_order(lots))


def next_expiry(lots: list[CreditLot]) -> NextExpiry | None:
    """The soonest expiry among `lots` (live_lots' answer) and what will be left to expire then."""
    dated = [lot for lot in lots if lot.expires_at is not None]
    if not dated:
        return None
    at = min(lot.expires_at for lot in dated)
    return NextExpiry(
        at=at, amount=to_decimal(sum((lot.remaining for lot in dated if lot.expires_at == at), Decimal(0)))
    )


def wallet_lots(*, wallet_id: int):
    """All the wallet's lots (spent and expired too) for the console: the live ones first, in burn order."""
    lots = CreditLot.objects.filter(wallet_id=wallet_id)
    return _in_burn_order(
        lots.annotate(spent=ExpressionWrapper(Q(remaining=0), output_field=BooleanField()))
    ).order_by("spent", *BURN_ORDER)
