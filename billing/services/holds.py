"""Credit holds: a turn's worst-case cost reserved before its model call, released if never settled."""

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing.models import CreditHold, ModelPrice, Wallet
from billing.money import quantize, to_decimal
from billing.selectors import remember_price
from billing.services._wallet import WALLET, move
from config.db import execute_prepared, loaded

logger = logging.getLogger(__name__)

HOLD = CreditHold._meta.db_table
# The reservation in one statement, atomic on its own (no BEGIN/COMMIT round trips): expire the
# wallet's stale holds, lock the wallet (after the holds, as charging and release_expired_holds do),
# decide on the row as locked, move `held`, and insert the hold. Concurrent turns queue on the wallet
# row and each sees the `held` the previous one left, so a burst cannot reserve past the balance.
# A refused reservation still gives back what expired. With a model, it also reads the model's active
# price (the price the call is charged at).
_PRICE_COLUMNS = tuple(f.attname for f in ModelPrice._meta.concrete_fields)
_RESERVE_SQL = (
    "WITH exp AS ("  # noqa: S608 - every name below is one of our tables
    f" UPDATE {HOLD} SET status = 'expired', closed_at = %(now)s"
    " WHERE status = 'held' AND expires_at <= %(now)s"
    f" AND wallet_id = (SELECT id FROM {WALLET} WHERE user_id = %(user_id)s) RETURNING amount"
    "), rel AS (SELECT coalesce(sum(amount), 0) AS released, count(*) AS n FROM exp"
    "), cur AS ("
    " SELECT wl.id, wl.balance, wl.held, rel.released, rel.n, ("
    "  wl.enforcement = 'exempt' OR (wl.enforcement = 'default' AND NOT %(enforce_default)s)"
    "  OR wl.balance - (wl.held - rel.released) > 0) AS allowed"
    f" FROM {WALLET} wl, rel WHERE wl.user_id = %(user_id)s FOR UPDATE OF wl"
    "), w AS ("
    f" UPDATE {WALLET} wl SET held = wl.held - cur.released"
    " + CASE WHEN cur.allowed THEN %(amount)s ELSE 0 END, updated_at = %(now)s"
    " FROM cur WHERE wl.id = cur.id AND (cur.allowed OR cur.n > 0)"
    " RETURNING wl.id, wl.balance, wl.held, wl.enforcement, cur.allowed"
    "), h AS ("
    f" INSERT INTO {HOLD} (wallet_id, amount, status, shadow_refusal, created_at, expires_at)"
    " SELECT w.id, %(amount)s, 'held', (w.balance - (w.held - %(amount)s) <= 0"
    " AND w.enforcement = 'default' AND %(shadow_default)s), %(now)s, %(expires_at)s"
    " FROM w WHERE w.allowed RETURNING id, wallet_id, shadow_refusal"
    ") SELECT cur.allowed, cur.balance, cur.held - cur.released, w.held, h.id, h.wallet_id, h.shadow_refusal, "
    + ", ".join(f"p.{f.column}" for f in ModelPrice._meta.concrete_fields)
    + " FROM cur LEFT JOIN w ON true LEFT JOIN h ON true"
    f" LEFT JOIN {ModelPrice._meta.db_table} p ON p.model = %(model)s AND p.active"
)
_EXPIRE_SQL = (
    f"UPDATE {HOLD} SET status = 'expired', closed_at = %s "  # noqa: S608
    f"WHERE status = 'held' AND expires_at <= %s AND wallet_id = (SELECT id FROM {WALLET} WHERE user_id = %s) "
    "RETURNING amount"
)
_CLOSE_SQL = (
    f"UPDATE {HOLD} SET status = %s, closed_at = %s "  # noqa: S608
    "WHERE id = %s AND status = 'held' RETURNING amount"
)


@dataclass(frozen=True)
class Reservation:
    hold: CreditHold | None  # None when refused
    balance: Decimal
    available: Decimal  # balance - held, before this reservation
    refused: bool = False
    price: ModelPrice | None = None  # with `model`: its active price as reserved (None: it has none)

    @property
    def shadow_refusal(self) -> bool:
        return bool(self.hold and self.hold.shadow_refusal)


def enforcement_applies(enforcement: str) -> bool:
    """Whether an empty wallet is refused: its override, else CREDIT_ENFORCEMENT_ENABLED (read now)."""
    if enforcement == Wallet.Enforcement.EXEMPT:
        return False
    if enforcement == Wallet.Enforcement.ENFORCED:
        return True
    return bool(settings.CREDIT_ENFORCEMENT_ENABLED)


def reserve(*, user, amount: Decimal, model: str | None = None) -> Reservation:
    """Hold a call's estimated cost in one conditional statement; refused when enforced and available <= 0.

    With `model`, the same statement reads the model's active price (`Reservation.price`), the one
    the call is charged at, and keeps it for billing.selectors.known_price.
    """
    now = timezone.now()
    amount = quantize(Decimal(amount))
    expires_at = now + timedelta(seconds=settings.CREDIT_HOLD_TTL_SECONDS)
    enforce_default = bool(settings.CREDIT_ENFORCEMENT_ENABLED)
    rows = execute_prepared(
        _RESERVE_SQL,
        {
            "now": now,
            "user_id": user.pk,
            "amount": amount,
            "expires_at": expires_at,
            "enforce_default": enforce_default,
            "shadow_default": not enforce_default and bool(settings.CREDIT_ENFORCEMENT_SHADOW),
            "model": model,
        },
    )
    if not rows:
        raise Wallet.DoesNotExist(f"User {user.pk} has no wallet.")
    allowed, balance, held_before, held_after, hold_id, wallet_id, shadow, *price_row = rows[0]
    price = None
    if model is not None:
        price = (
            loaded(ModelPrice, **dict(zip(_PRICE_COLUMNS, price_row, strict=True))) if price_row[0] else None
        )
        remember_price(model=model, price=price)
    balance = to_decimal(balance)
    if not allowed:
        available = balance - to_decimal(held_before)
        logger.warning(
            "turn refused: insufficient credits",
            extra={"user_id": user.pk, "balance": str(balance), "available": str(available)},
        )
        return Reservation(hold=None, balance=balance, available=available, refused=True, price=price)
    available = balance - (to_decimal(held_after) - amount)
    hold = loaded(
        CreditHold,
        id=hold_id,
        wallet_id=wallet_id,
        amount=amount,
        status=CreditHold.Status.HELD,
        shadow_refusal=shadow,
        created_at=now,
        expires_at=expires_at,
        closed_at=None,
        llm_call_id=None,
    )
    if shadow:
        logger.info(
            "shadow refusal: enforcement would have refused this turn",
            extra={
                "user_id": user.pk,
                "balance": str(balance),
                "available": str(available),
                "hold_id": hold_id,
            },
        )
    return Reservation(hold=hold, balance=balance, available=available, price=price)


def release(*, hold: CreditHold) -> None:
    """Give back a hold that will not be settled (idempotent: a closed hold is left as it is)."""
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_CLOSE_SQL, [CreditHold.Status.RELEASED, now, hold.pk])
            row = cursor.fetchone()
        if row is not None:
            move(user_id=hold.wallet.user_id, amount=Decimal(0), held=-to_decimal(row[0]))
    hold.status, hold.closed_at = CreditHold.Status.RELEASED, now


def release_expired_holds() -> int:
    """Expire every hold past its expiry, wallet by wallet; safe to run again and alongside turns."""
    now = timezone.now()
    user_ids = (
        CreditHold.objects.filter(status=CreditHold.Status.HELD, expires_at__lte=now)
        .values_list("wallet__user_id", flat=True)
        .distinct()
    )
    count = 0
    for user_id in list(user_ids):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(_EXPIRE_SQL, [now, now, user_id])
                amounts = [to_decimal(r[0]) for r in cursor.fetchall()]
            if amounts:
                move(user_id=user_id, amount=Decimal(0), held=-sum(amounts, Decimal(0)))
        count += len(amounts)
    if count:
        logger.info("expired holds released", extra={"holds": count})
    return count
