"""Reads of a wallet's credit lots: the live ones in burn order, the next expiry, allowances' issues (no writes here)."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import BooleanField, Count, ExpressionWrapper, F, Q, Sum, Window
from django.utils import timezone

from billing.models import AllowanceIssue, CreditLot
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


def _live(*, now: datetime | None, **owner):
    return CreditLot.objects.filter(**owner, remaining__gt=0).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now or timezone.now())
    )


def live_lots(*, wallet_id: int | None = None, user=None, now: datetime | None = None) -> list[CreditLot]:
    """The wallet's (by id, or its user's) live lots (something left, not expired), in the order a charge burns them."""
    owner = {"wallet_id": wallet_id} if wallet_id is not None else {"wallet__user": user}
    return list(_in_burn_order(_live(now=now, **owner)))


def next_expiry(lots: list[CreditLot]) -> NextExpiry | None:
    """The soonest expiry among `lots` (live_lots' answer) and what will be left to expire then."""
    dated = [lot for lot in lots if lot.expires_at is not None]
    if not dated:
        return None
    at = min(lot.expires_at for lot in dated)
    return NextExpiry(
        at=at, amount=to_decimal(sum((lot.remaining for lot in dated if lot.expires_at == at), Decimal(0)))
    )


@dataclass(frozen=True)
class LotsPage:
    lots: list[CreditLot]  # the first live lots, in burn order
    more: int  # how many live lots come after them
    next_expiry: NextExpiry | None  # over every live lot, shown or not


def live_lots_page(*, wallet_id: int, limit: int, now: datetime | None = None) -> LotsPage:
    """The wallet's first `limit` live lots in burn order, how many more there are, and the next expiry over all
    of them: two queries, however many lots the wallet holds (for the pages people see)."""
    now = now or timezone.now()
    live = _live(now=now, wallet_id=wallet_id)
    # The count is a window over the whole live set, computed before the LIMIT cuts it.
    lots = list(_in_burn_order(live).annotate(live_count=Window(Count("id")))[:limit])
    # A lot expiring soon may burn late (a high priority number), so the next expiry is its own read.
    soonest = (
        live.filter(expires_at__isnull=False)
        .values("expires_at")
        .annotate(left=Sum("remaining"))
        .order_by("expires_at")
        .first()
    )
    return LotsPage(
        lots=lots,
        more=lots[0].live_count - len(lots) if lots else 0,
        next_expiry=None
        if soonest is None
        else NextExpiry(at=soonest["expires_at"], amount=to_decimal(soonest["left"])),
    )


def wallet_lots(*, wallet_id: int):
    """All the wallet's lots (spent and expired too) for the console: the live ones first, in burn order."""
    lots = CreditLot.objects.filter(wallet_id=wallet_id)
    return _in_burn_order(
        lots.annotate(spent=ExpressionWrapper(Q(remaining=0), output_field=BooleanField()))
    ).order_by("spent", *BURN_ORDER)


@dataclass(frozen=True)
class IssuesPage:
    issues: list[AllowanceIssue]  # the newest, with their user and ledger row
    count: int  # every issue of the allowance


def allowance_issues_page(*, allowance_id: int, limit: int) -> IssuesPage:
    """An allowance's newest `limit` issues and how many it has in all (two queries, however many)."""
    issues = AllowanceIssue.objects.filter(allowance_id=allowance_id)
    newest = list(issues.select_related("user", "transaction").order_by("-id")[:limit])
    return IssuesPage(issues=newest, count=len(newest) if len(newest) < limit else issues.count())
