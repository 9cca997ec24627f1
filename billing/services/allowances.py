"""Recurring allowances: each assigned user's lot for the current calendar period, issued exactly once; switched on and off."""

import logging
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from billing.models import Allowance, AllowanceIssue, CreditLot, CreditTransaction, Wallet
from billing.periods import next_reset, period_start
from billing.services.ledger import append
from core.money import format_money

logger = logging.getLogger(__name__)

_ONCE = "allowanceissue_once_per_period"
ALLOWANCE = Allowance._meta.db_table
# The allowance's row, if it still has the period this run read, held FOR KEY SHARE until the issue
# commits (issues of one allowance share it; Django's foreign keys are checked only at commit, so the
# insert alone would hold nothing). A save of the allowance takes the row FOR UPDATE (Allowance.save):
# it waits for this issue and then finds it; a save that locked the row first is waited for, and the
# row, re-read as it committed it, no longer matches a changed period, so no row comes back.
_SAME_PERIOD_SQL = f"""
    SELECT allowance.id
    FROM {ALLOWANCE} AS allowance
    WHERE allowance.id = %(allowance_id)s AND allowance.period = %(period)s
    FOR KEY SHARE
"""  # noqa: S608 - our table


class _PeriodChanged(Exception):
    """The allowance's period was changed after this run read it and before its first issue committed."""


def issue_allowances(*, now: datetime | None = None) -> int:
    """Give every user an active allowance reaches (directly or through a group) its lot for the
    current period in REPORT_TIME_ZONE, once; returns how many were issued.

    Late but once: a worker that was down issues the current period's lot when it comes back (a
    period that passed entirely without a run is not back-filled). Once: each issue is the ledger
    row and its AllowanceIssue row in one transaction, and the unique (allowance, user, period)
    constraint lets one of two racing workers through; the other's transaction rolls back whole.
    A deactivated user gets none (nobody can spend them); reactivated, the current period's comes
    with the next run. An allowance's period is fixed once issued (Allowance.save); one changed while
    this run was about to issue it for the first time is left to the next run, under the new period.
    """
    now = now or timezone.now()
    issued = 0
    for allowance in Allowance.objects.filter(active=True).order_by("id"):
        start = period_start(allowance.period, now)
        expires_at = next_reset(allowance.period, now) if allowance.expires_with_period else None
        already = AllowanceIssue.objects.filter(
            allowance=allowance, period_start=start, user_id=OuterRef("user_id")
        )
        user_ids = (
            Wallet.objects.filter(
                Q(user__in=allowance.users.values("pk")) | Q(user__groups__in=allowance.groups.values("pk"))
            )
            .filter(~Exists(already), user__is_active=True)  # a deactivated account gets none
            .values_list("user_id", flat=True)
            .distinct()
            .order_by("user_id")
        )
        try:
            for user_id in user_ids.iterator(chunk_size=1000):
                issued += _issue(allowance=allowance, user_id=user_id, start=start, expires_at=expires_at)
        except _PeriodChanged:
            logger.warning(
                "allowance period changed before its first issue; left to the next run",
                extra={"allowance": allowance.pk, "period": allowance.period},
            )
    return issued


def set_allowances_active(*, allowance_ids: list[int], active: bool) -> list[Allowance]:
    """Switch the allowances on or off (the job issues only active ones; lots issued stay as they
    are); returns those that changed, each as it was read before the change."""
    with transaction.atomic():
        changed = list(
            Allowance.objects.select_for_update()
            .filter(pk__in=allowance_ids)
            .exclude(active=active)
            .order_by("id")
        )
        Allowance.objects.filter(pk__in=[allowance.pk for allowance in changed]).update(active=active)
    for allowance in changed:
        logger.info("allowance switched", extra={"allowance": allowance.pk, "active": active})
    return changed


def _issue(*, allowance: Allowance, user_id: int, start, expires_at: datetime | None) -> int:
    """One user's lot for one period and the row that makes it unique; 0 if another worker won."""
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(_SAME_PERIOD_SQL, {"allowance_id": allowance.pk, "period": allowance.period})
                if cursor.fetchone() is None:
                    raise _PeriodChanged
            row = append(
                user_id=user_id,
                kind=CreditTransaction.Kind.ALLOWANCE,
                amount=allowance.credits,
                reason=f"Allowance {allowance.name!r}: {format_money(allowance.credits)} credits "
                f"for the {allowance.period} from {start.isoformat()}",
                category=CreditLot.Category.PROMOTIONAL,
                expires_at=expires_at,
            )
            AllowanceIssue.objects.create(
                allowance=allowance, user_id=user_id, period_start=start, transaction=row
            )
    except IntegrityError as exc:
        if _ONCE not in str(exc):
            raise
        return 0
    logger.info(
        "allowance issued",
        extra={
            "allowance": allowance.pk,
            "user_id": user_id,
            "period_start": start.isoformat(),
            "transaction_id": row.pk,
        },
    )
    return 1
