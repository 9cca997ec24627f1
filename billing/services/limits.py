"""Spend limits: an API key's limit and the wallet's spending caps, opened, changed and alerted on.

The limits are enforced by the reservation (billing.services.holds) and counted by the charge
(billing.services.charging), both under the wallet's row lock; this module writes them otherwise:
a key's limit opened or changed, a cap set or removed, a key hold given back, and the cap alerts
(50, 80, 100 percent, once per period) recorded after a charge as `wallet.spend_cap_threshold` events.
"""

import logging
import uuid
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.exceptions import InvalidLimit
from billing.models import SpendLimit, UsageDaily, UsageKeyDaily, Wallet, WalletEvent
from billing.periods import PERIODS, local_today, period_start
from billing.signals import wallet_events_recorded
from core.money import quantize, to_decimal

logger = logging.getLogger(__name__)

LIMIT_MAX = Decimal("1000000000")
# set_spend_cap's "leave the amount as it is" (a PATCH without spend_cap), and a new cap's period.
UNCHANGED = object()
DEFAULT_CAP_PERIOD = "month"
CAP_ALERT_PERCENTS = (50, 80, 100)
CAP_KINDS = (SpendLimit.Kind.USER_CAP, SpendLimit.Kind.STAFF_CAP)
_GIVE_BACK_SQL = f"""
    UPDATE {SpendLimit._meta.db_table}
    SET held = held - %(amount)s, updated_at = %(now)s
    WHERE id = %(spend_limit_id)s
"""  # noqa: S608 - our table


def validate_limit(amount: Decimal | None, *, field: str = "limit") -> Decimal | None:
    """A limit is null (none) or a money amount from 0 to LIMIT_MAX."""
    if amount is None:
        return None
    amount = quantize(Decimal(amount))
    if amount < 0 or amount > LIMIT_MAX:
        raise InvalidLimit(f"A limit is an amount from 0 to {LIMIT_MAX}, or null for none.", field=field)
    return amount


def validate_period(period: str | None, *, field: str, allow_none: bool) -> str | None:
    if period is None and allow_none:
        return None
    if period not in PERIODS:
        choices = ", ".join(f'"{p}"' for p in PERIODS) + (" or null" if allow_none else "")
        raise InvalidLimit(f"The period must be one of {choices}.", field=field)
    return period


def give_back_key_hold(*, spend_limit_id: int, amount: Decimal) -> None:
    """Take a closed hold's amount off its key limit's `held`; the caller holds the transaction that closed it."""
    with connection.cursor() as cursor:
        cursor.execute(
            _GIVE_BACK_SQL, {"amount": amount, "now": timezone.now(), "spend_limit_id": spend_limit_id}
        )


def _locked_wallet(user_id: int) -> Wallet:
    return Wallet.objects.select_for_update().get(user_id=user_id)


def open_key_limit(*, user, amount: Decimal | None, period: str | None) -> SpendLimit:
    """A new API key's limit on the user's wallet (`amount` None: no limit; `period` None: never resets)."""
    amount = validate_limit(amount)
    period = validate_period(period, field="limit_reset", allow_none=True)
    wallet_id = Wallet.objects.values_list("id", flat=True).get(user=user)
    return SpendLimit.objects.create(
        wallet_id=wallet_id,
        kind=SpendLimit.Kind.KEY,
        amount=amount,
        period=period,
        period_start=period_start(period),
    )


def change_key_limit(*, spend_limit: SpendLimit, amount: Decimal | None, period: str | None) -> SpendLimit:
    """Set a key's limit and its period; a new period's spending is recounted from the key's usage rollup.

    The recount reads the key's local days (UsageKeyDaily), as set_spend_cap reads UsageDaily, not
    its call events: months of events may be detached (billing.partitions), and a recount from what
    is left would forget their spending and let the key spend its limit again.
    """
    amount = validate_limit(amount)
    period = validate_period(period, field="limit_reset", allow_none=True)
    with transaction.atomic():
        _locked_wallet(spend_limit.wallet.user_id)  # the order every writer of the limit takes
        row = SpendLimit.objects.select_for_update().get(pk=spend_limit.pk)
        if period != row.period:
            start = period_start(period)
            days = UsageKeyDaily.objects.filter(spend_limit_id=row.pk, day__lte=local_today())
            if start is not None:  # else the key's whole life: a limit that never resets
                days = days.filter(day__gte=start)
            row.spent = to_decimal(days.aggregate(total=Sum("cost"))["total"] or 0)
            row.period, row.period_start = period, start
        row.amount = amount
        row.save(update_fields=["amount", "period", "period_start", "spent", "updated_at"])
    return row


def set_spend_cap(
    *, user, kind: str, amount: Decimal | None | object = UNCHANGED, period: str | None = None
) -> SpendLimit | None:
    """Set (or, with `amount` None, remove) the wallet's cap of `kind` (the user's, or staff's).

    A PATCH's rules: `amount` UNCHANGED keeps the cap's amount (only its period changes; without a
    cap and without a period nothing changes); `period` None keeps the cap's period, and a new cap
    without one is monthly. The period's spending so far is counted from the usage rollup's local
    days, so a cap set mid-period counts what was spent before it.
    """
    if kind not in CAP_KINDS:
        raise ValueError(f"kind must be one of {CAP_KINDS}")
    if amount is not UNCHANGED:
        amount = validate_limit(amount, field="spend_cap")
    if period is not None:
        period = validate_period(period, field="spend_cap_period", allow_none=False)
    with transaction.atomic():
        wallet = _locked_wallet(user.pk)
        existing = SpendLimit.objects.select_for_update().filter(wallet=wallet, kind=kind).first()
        if amount is UNCHANGED:
            if existing is None and period is not None:
                raise InvalidLimit(
                    "There is no spending cap whose period could change: send spend_cap with the period.",
                    field="spend_cap",
                )
            if existing is None or period is None:
                return existing
            amount = existing.amount
        if amount is None:
            if existing is not None:
                existing.delete()
            return None
        period = period or (existing.period if existing else DEFAULT_CAP_PERIOD)
        start = period_start(period)
        if existing is None or existing.period != period or existing.period_start != start:
            spent = UsageDaily.objects.filter(
                user_id=user.pk, day__gte=start, day__lte=local_today()
            ).aggregate(total=Sum("cost"))["total"]
            spent = to_decimal(spent or 0)
        else:
            spent = existing.spent
        cap = existing or SpendLimit(wallet=wallet, kind=kind)
        cap.amount, cap.period, cap.period_start, cap.spent = amount, period, start, spent
        cap.save()
    return cap


def record_cap_alerts(*, wallet_id: int, user_id: int, caps: list, balance: Decimal) -> list:
    """After a charge, under the wallet's lock: one `wallet.spend_cap_threshold` event per cap
    percent the charge reached, once per period (the cap row remembers the highest one sent).

    `caps` are the charge statement's cap rows after it: [id, amount, spent, counted, period_start,
    alerted_percent, alerted_period_start], `counted` what the charge added to `spent` (nothing for
    a call made in a period the cap has already left).
    """
    if not caps:
        return []
    events = []
    for cap_id, amount, spent, counted, start, alerted, alerted_start in caps:
        amount, spent, counted = Decimal(amount), Decimal(spent), Decimal(counted)
        if amount <= 0 or counted <= 0:
            continue
        before = spent - counted
        already = alerted if alerted_start == start else 0
        reached = [p for p in CAP_ALERT_PERCENTS if p > already and before * 100 < amount * p <= spent * 100]
        if not reached:
            continue
        SpendLimit.objects.filter(pk=cap_id).update(
            alerted_percent=max(reached), alerted_period_start=start, updated_at=timezone.now()
        )
        events += [
            WalletEvent(
                uuid=uuid.uuid4(),
                wallet_id=wallet_id,
                type=WalletEvent.Type.SPEND_CAP_THRESHOLD,
                balance_before=balance,
                balance=balance,
                threshold=amount,
                percent=percent,
                created_at=timezone.now(),
            )
            for percent in reached
        ]
    if events:
        events = WalletEvent.objects.bulk_create(events)
        wallet_events_recorded.send(sender=WalletEvent, events=events)
        for event in events:
            logger.info(
                "spend cap alert recorded",
                extra={"event": str(event.uuid), "user_id": user_id, "percent": event.percent},
            )
    return events
