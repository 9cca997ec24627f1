"""Credit lots: a credit opens one (after paying the wallet's debt), a debit burns them in the pinned order, expiry empties them.

Why the burn is safe against concurrent lot writers (READ COMMITTED): every statement that writes a
lot runs after its transaction holds the wallet's row lock (append moves the wallet before it opens
or burns a lot; expire_lots locks the wallet before it reads the lot; the charge's one statement
moves the wallet in its `moved_wallet` step before `burned_lots`). A plain CTE in the charge's
statement would read the lots as of the statement's start, which may be before the wallet lock was
granted, i.e. before a concurrent expiry or grant committed: it could burn credit already expired.
So the burn is the PL/pgSQL function billing_burn_lots (migration 0020, "..._burn_function_..."):
a VOLATILE function's statements each take a fresh snapshot when they start, after the caller's
lock was granted, and see every lot change committed before it. The charge pays no extra round
trip for it; negative adjustments call the same function, so the burn is written once.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from billing.exceptions import InvalidGrant
from billing.models import CreditLot, CreditTransaction, LotAllocation, Wallet
from core.db import loaded
from core.money import format_money, to_decimal
from core.validators import LATEST_MOMENT, parse_iso_datetime

PRIORITY_DEFAULT = 50
PRIORITY_MIN, PRIORITY_MAX = 0, 100

Kind = CreditTransaction.Kind
Category = CreditLot.Category
# The lot a credit of each kind opens when the caller names no terms.
_DEFAULT_CATEGORY = {
    Kind.GRANT: Category.PROMOTIONAL,
    Kind.ALLOWANCE: Category.PROMOTIONAL,
    Kind.PURCHASE: Category.PAID,
    Kind.REFUND: Category.PAID,
    Kind.ADJUSTMENT: Category.PAID,
}


@dataclass(frozen=True)
class LotTerms:
    category: str
    priority: int
    expires_at: datetime | None


def default_terms(*, kind: str) -> LotTerms:
    """The terms of a credit of `kind` for which nobody chose any: no expiry, priority 50."""
    return LotTerms(
        category=_DEFAULT_CATEGORY.get(kind, Category.PAID), priority=PRIORITY_DEFAULT, expires_at=None
    )


DATE_ALONE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def validate_expires_at(raw, *, now: datetime | None = None, past_ok: bool = False) -> datetime | None:
    """An ISO 8601 date-time in the future (naive: in UTC), or None for never; `past_ok`: any time
    (a replay's terms are compared with the first request's, sent when they were still ahead)."""
    if raw is None or raw == "":
        return None
    value = parse_iso_datetime(raw.strip()) if isinstance(raw, str) else raw
    if isinstance(raw, str) and DATE_ALONE.fullmatch(raw.strip()):
        raise InvalidGrant(
            f"expires_at needs a time as well as a date (a date alone is no moment), e.g. {raw.strip()}T00:00:00Z.",
            field="expires_at",
        )
    if not isinstance(value, datetime):
        raise InvalidGrant(
            "Enter expires_at as an ISO 8601 date and time, e.g. 2026-12-31T23:59:00Z.", field="expires_at"
        )
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    try:
        too_late = value.astimezone(UTC) > LATEST_MOMENT
    except OverflowError:  # 9999-12-31T23:00-05:00 is in year 10000 in UTC
        too_late = True
    if too_late:
        raise InvalidGrant(
            f"expires_at must be no later than {LATEST_MOMENT:%Y-%m-%d} (UTC); leave it out for credits "
            "that never expire.",
            field="expires_at",
        )
    if not past_ok and value <= (now or timezone.now()):
        raise past_expiry()
    return value


def past_expiry() -> InvalidGrant:
    return InvalidGrant(
        "expires_at must be in the future; leave it out for credits that never expire.", field="expires_at"
    )


def validate_priority(raw) -> int:
    """A whole number from 0 to 100 (lower burns first)."""
    if raw is None or raw == "":
        return PRIORITY_DEFAULT
    value = raw
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        value = int(raw.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise InvalidGrant(
            f"priority must be a whole number from {PRIORITY_MIN} to {PRIORITY_MAX} (lower burns first).",
            field="priority",
        )
    return value


def validate_category(raw, *, default: str = Category.PROMOTIONAL) -> str:
    """paid or promotional (None: `default`)."""
    if raw is None or raw == "":
        return default
    if raw not in Category.values:
        raise InvalidGrant(
            f"Unknown category {raw!r}; choose one of: {', '.join(Category.values)}.", field="category"
        )
    return raw


def validate_terms(
    *, expires_at=None, priority=None, category=None, kind: str = Kind.GRANT, past_ok: bool = False
) -> LotTerms:
    """A grant's lot terms as staff send them, each refused on its own field; defaults from `kind`."""
    return LotTerms(
        category=validate_category(category, default=default_terms(kind=kind).category),
        priority=validate_priority(priority),
        expires_at=validate_expires_at(expires_at, past_ok=past_ok),
    )


# A credit's lot, in one statement that starts after the caller's move took the wallet's lock (so
# it reads the debt as it is now): the debt paid first from the credit, the lot opened with the rest.
_OPEN_LOT_SQL = f"""
    WITH
    -- What the credit pays of the wallet's debt.
    debt_paid AS (
        SELECT least(debt, %(amount)s) AS amount FROM {Wallet._meta.db_table} WHERE id = %(wallet_id)s
    ),
    -- The debt lowered by it (no write when there was none).
    paid_wallet AS (
        UPDATE {Wallet._meta.db_table} SET debt = debt - (SELECT amount FROM debt_paid)
        WHERE id = %(wallet_id)s AND (SELECT amount FROM debt_paid) > 0
    )
    -- The lot, holding what is left of the credit.
    INSERT INTO {CreditLot._meta.db_table} (wallet_id, transaction_id, source, category, priority,
        effective_at, expires_at, amount, remaining, debt_paid, created_at)
    SELECT %(wallet_id)s, %(transaction_id)s, %(source)s, %(category)s, %(priority)s, %(effective_at)s,
        %(expires_at)s, %(amount)s, %(amount)s - debt_paid.amount, debt_paid.amount, %(effective_at)s
    FROM debt_paid
    RETURNING id, remaining, debt_paid
"""  # noqa: S608 - our tables


def open_lot(*, wallet_id: int, row: CreditTransaction, terms: LotTerms) -> CreditLot:
    """The lot of a credit row: the wallet's debt paid from it first; the caller holds the wallet's lock."""
    values = {
        "wallet_id": wallet_id,
        "transaction_id": row.pk,
        "source": row.kind,
        "category": terms.category,
        "priority": terms.priority,
        "effective_at": row.created_at,
        "expires_at": terms.expires_at,
        "amount": row.amount,
    }
    with connection.cursor() as cursor:
        cursor.execute(_OPEN_LOT_SQL, values)
        lot_id, remaining, debt_paid = cursor.fetchone()
    return loaded(
        CreditLot,
        **{k: v for k, v in values.items() if k != "amount"},
        id=lot_id,
        amount=row.amount,
        remaining=to_decimal(remaining),
        debt_paid=to_decimal(debt_paid),
        created_at=row.created_at,
    )


def burn(*, wallet_id: int, row: CreditTransaction, now: datetime | None = None) -> Decimal:
    """Burn -row.amount from the wallet's live lots in order; returns what went to debt. The caller holds the lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT billing_burn_lots(%s, %s, %s, %s)",
            [wallet_id, row.pk, -row.amount, now or timezone.now()],
        )
        return to_decimal(cursor.fetchone()[0])


def take_lot(*, lot: CreditLot, row: CreditTransaction) -> None:
    """Empty `lot` into `row` (its expiry); the caller holds the wallet's lock and read `lot` under it."""
    CreditLot.objects.filter(pk=lot.pk).update(remaining=0)
    LotAllocation.objects.create(transaction=row, lot=lot, amount=-row.amount)


def expire_lots(*, now: datetime | None = None, batch: int = 500) -> int:
    """Write one expiry row per lot past its expiry for what is left of it, once; returns how many.

    Each lot in its own transaction: lock the wallet, then re-read the lot (a statement that starts
    after the lock, so it sees any burn or expiry committed meanwhile); a lot another worker or a
    charge emptied is skipped. Two workers or a charge racing this one wait on the wallet lock.
    """
    from billing.services.ledger import append

    now = now or timezone.now()
    expired = 0
    while True:
        due = list(
            CreditLot.objects.filter(remaining__gt=0, expires_at__lte=now)
            .order_by("expires_at", "id")
            .values_list("id", "wallet__user_id")[:batch]
        )
        for lot_id, user_id in due:
            with transaction.atomic():
                Wallet.objects.select_for_update().filter(user_id=user_id).values_list("id").get()
                lot = CreditLot.objects.filter(pk=lot_id, remaining__gt=0).first()
                if lot is None:
                    continue
                append(
                    user_id=user_id,
                    kind=Kind.EXPIRY,
                    amount=-lot.remaining,
                    reason=(
                        f"Lot {lot.pk} ({lot.get_source_display()}, {lot.category}, "
                        f"{format_money(lot.amount)} credits) expired at {lot.expires_at.isoformat()}"
                    ),
                    expired_lot=lot,
                )
                expired += 1
        if len(due) < batch:
            return expired


# Migration 0020 (..._opening_lots) runs a frozen copy of this for the wallets that existed then;
# this one serves ledgers written around the services (the bench seed copies rows in bulk).
_OPENING_LOTS_SQL = f"""
    INSERT INTO {CreditLot._meta.db_table} (wallet_id, transaction_id, source, category, priority,
        effective_at, expires_at, amount, remaining, debt_paid, created_at)
    SELECT wallet.id, last_row.id, 'opening', 'paid', {PRIORITY_DEFAULT}, now(), NULL, wallet.balance,
        wallet.balance, 0, now()
    FROM {Wallet._meta.db_table} wallet
    CROSS JOIN LATERAL (
        SELECT id FROM {CreditTransaction._meta.db_table} row
        WHERE row.wallet_id = wallet.id
        ORDER BY row.wallet_id DESC, row.id DESC
        LIMIT 1
    ) last_row
    WHERE wallet.balance > 0
        AND NOT EXISTS (SELECT 1 FROM {CreditLot._meta.db_table} lot WHERE lot.wallet_id = wallet.id)
"""  # noqa: S608 - our tables
_OPENING_DEBT_SQL = f"""
    UPDATE {Wallet._meta.db_table} wallet SET debt = -balance
    WHERE balance < 0 AND debt = 0
        AND NOT EXISTS (SELECT 1 FROM {CreditLot._meta.db_table} lot WHERE lot.wallet_id = wallet.id)
"""  # noqa: S608 - our tables


def open_opening_lots() -> None:
    """Give each wallet that has no lots its balance as one paid, never-expiring `opening` lot (a
    negative balance: its debt), set-based. For ledgers written in bulk around the services."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_OPENING_LOTS_SQL)
        cursor.execute(_OPENING_DEBT_SQL)
