"""Wallet crossings: one WalletEvent per crossing, announced, in the transaction that moved the wallet.

Both ways a balance changes (`_wallet.move` and `charging._record`) call `record_crossings` with the
before/after of their one locking statement, inside the caller's transaction and under the wallet's
row lock: concurrent moves of one wallet are serialized, each sees the balance the previous one left,
so exactly one of them takes the wallet across a line. The common move crosses nothing and costs no query.
The events are announced with `billing.signals.wallet_events_recorded`, in that same transaction (the
app that delivers them, notifications, defers its job there).
"""

import logging
import uuid
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing.models import WalletEvent
from billing.selectors import low_balance_threshold
from billing.signals import wallet_events_recorded

logger = logging.getLogger(__name__)

_DOWN_TYPES = (WalletEvent.Type.LOW_BALANCE, WalletEvent.Type.DEPLETED)
# The balance lines (a spending cap's alerts are events of another kind).
_BALANCE_TYPES = (*_DOWN_TYPES, WalletEvent.Type.REPLENISHED)


def crossings(*, balance_before: Decimal, balance_after: Decimal, threshold: Decimal) -> list[str]:
    """The lines a move crosses: from above the threshold to at or below it, from above 0 to <= 0, back above."""
    found = []
    if balance_before > threshold >= balance_after:
        found.append(WalletEvent.Type.LOW_BALANCE)
    if balance_before > 0 >= balance_after:
        found.append(WalletEvent.Type.DEPLETED)
    if balance_before <= threshold < balance_after:
        found.append(WalletEvent.Type.REPLENISHED)
    return found


def record_crossings(
    *, wallet_id: int, user_id: int, balance_before: Decimal, balance_after: Decimal
) -> list[WalletEvent]:
    """Record each line this move crossed, once, and announce it; the caller holds the wallet's lock."""
    if balance_before == balance_after:  # hold-only moves, zero-cost calls
        return []
    threshold = low_balance_threshold()
    types = crossings(balance_before=balance_before, balance_after=balance_after, threshold=threshold)
    if not types:
        return []
    if types == [WalletEvent.Type.REPLENISHED] and not _was_low(wallet_id):
        # Back above only after a low or empty notice: a new wallet's starting credits tell no one anything.
        return []
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        events = WalletEvent.objects.bulk_create(
            [
                WalletEvent(
                    uuid=uuid.uuid4(),
                    wallet_id=wallet_id,
                    type=type_,
                    balance_before=balance_before,
                    balance=balance_after,
                    threshold=threshold,
                    created_at=now,
                )
                for type_ in types
            ]
        )
        # Billing sits below the app that delivers events (notifications) and never imports it: the
        # signal is sent here, inside the transaction, so a receiver's job (procrastinate rows in the
        # same PostgreSQL) is never deferred for a rolled-back event, nor an event committed without it.
        wallet_events_recorded.send(sender=WalletEvent, events=events)
    for event in events:
        logger.info(
            "wallet event recorded",
            extra={
                "event": str(event.uuid),
                "type": event.type,
                "user_id": user_id,
                "wallet_id": wallet_id,
                "balance": str(balance_after),
                "threshold": str(threshold),
            },
        )
    return events


def _was_low(wallet_id: int) -> bool:
    """Whether the wallet's last crossing took it down (read under the lock that orders crossings)."""
    last = (
        WalletEvent.objects.filter(wallet_id=wallet_id, type__in=_BALANCE_TYPES)
        .order_by("-id")
        .values_list("type", flat=True)
        .first()
    )
    return last in _DOWN_TYPES
