"""Credit holds: a call's worst-case cost reserved before it is made, released (or charged) if never settled.

A streamed call records its progress on its hold (`record_progress`): what it has used so far, and
what charging it needs. A hold left open past its expiry by a dead worker is released if it has no
progress, else charged with it (capped at the hold) by `release_expired_holds`.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing.models import CreditHold, ModelPrice, Wallet
from billing.selectors import price_from_row
from billing.services._wallet import WALLET, move
from billing.services.charging import charge
from core.db import execute_prepared, loaded, selected
from core.money import quantize, to_decimal

logger = logging.getLogger(__name__)

HOLD = CreditHold._meta.db_table
PRICE = ModelPrice._meta.db_table
# The reservation and a stream's progress, run on their own (autocommit), commit without waiting for
# the WAL flush (synchronous_commit off for that one transaction): a hold moves no credits, and a
# crash that loses one loses the turn that needed it too. Every charge still commits synchronously,
# flushing the reservation's WAL with its own. Inside a caller's transaction, which may move credits,
# the setting stays as it is. A select-list item of the statements below.
_RELAXED_COMMIT = """set_config(
        'synchronous_commit',
        CASE WHEN %(on_its_own)s THEN 'off' ELSE current_setting('synchronous_commit') END,
        true
    )"""
# A wallet's stale holds, closed as expired, returning the amounts they held (the caller gives them
# back to the wallet). A hold with progress is owed a charge, so it is left to release_expired_holds
# (its amount stays held until then: at most a minute). Run on its own by release_expired_holds,
# and as the reservation's first step.
_EXPIRE_SQL = f"""
        UPDATE {HOLD}
        SET status = 'expired', closed_at = %(now)s
        WHERE status = 'held' AND expires_at <= %(now)s AND progress_at IS NULL
            AND wallet_id = (SELECT id FROM {WALLET} WHERE user_id = %(user_id)s)
        RETURNING amount"""  # noqa: S608 - our tables
# The reservation in one statement, atomic on its own (no BEGIN/COMMIT round trips). Concurrent
# turns queue on the wallet row and each sees the `held` the previous one left, so a burst cannot
# reserve past the balance. A refused reservation still gives back what expired. With a model, the
# statement also reads the model's active price (the price the call is charged at). Its commit is
# relaxed (_RELAXED_COMMIT).
_RESERVE_SQL = f"""
    WITH
    -- 1. The wallet's stale holds, expired (_EXPIRE_SQL).
    expired_holds AS ({_EXPIRE_SQL}
    ),
    -- 2. What they held, and how many they were.
    released AS (
        SELECT coalesce(sum(amount), 0) AS amount, count(*) AS holds
        FROM expired_holds
    ),
    -- 3. The wallet locked, after the holds (the order charging and release_expired_holds take
    --    them in), and the decision taken on the row as locked: allowed when exempt, when
    --    enforcement is off for it, or when something is left once the expired holds are given back.
    locked_wallet AS (
        SELECT wallet.id, wallet.balance, wallet.held,
            released.amount AS released, released.holds AS expired_count,
            (
                wallet.enforcement = 'exempt'
                OR (wallet.enforcement = 'default' AND NOT %(enforce_default)s)
                OR wallet.balance - (wallet.held - released.amount) > 0
            ) AS allowed
        FROM {WALLET} wallet, released
        WHERE wallet.user_id = %(user_id)s
        FOR UPDATE OF wallet
    ),
    -- 4. `held` moved: the expired holds given back, the new one added when allowed (a refused
    --    reservation with nothing expired leaves the wallet as it is).
    moved_wallet AS (
        UPDATE {WALLET} wallet
        SET held = wallet.held - locked_wallet.released
                + CASE WHEN locked_wallet.allowed THEN %(amount)s ELSE 0 END,
            updated_at = %(now)s
        FROM locked_wallet
        WHERE wallet.id = locked_wallet.id AND (locked_wallet.allowed OR locked_wallet.expired_count > 0)
        RETURNING wallet.id, wallet.balance, wallet.held, wallet.enforcement, locked_wallet.allowed
    ),
    -- 5. The hold, when allowed: a shadow refusal when enforcement is off but would have refused.
    new_hold AS (
        INSERT INTO {HOLD} (wallet_id, amount, status, shadow_refusal, created_at, expires_at)
        SELECT moved_wallet.id, %(amount)s, 'held',
            (
                moved_wallet.balance - (moved_wallet.held - %(amount)s) <= 0
                AND moved_wallet.enforcement = 'default' AND %(shadow_default)s
            ),
            %(now)s, %(expires_at)s
        FROM moved_wallet
        WHERE moved_wallet.allowed
        RETURNING id, wallet_id, shadow_refusal
    )
    -- 6. The commit relaxed; the decision, the balance, `held` before and after, the hold, and the
    --    model's active price (all nulls when it has none).
    SELECT {_RELAXED_COMMIT},
        locked_wallet.allowed, locked_wallet.balance, locked_wallet.held - locked_wallet.released,
        moved_wallet.held, new_hold.id, new_hold.wallet_id, new_hold.shadow_refusal,
        {selected(ModelPrice, "active_price")}
    FROM locked_wallet
    LEFT JOIN moved_wallet ON true
    LEFT JOIN new_hold ON true
    LEFT JOIN {PRICE} active_price ON active_price.model = %(model)s AND active_price.active
"""  # noqa: S608 - our tables
# A heartbeat as much as a record: each progress pushes the expiry one TTL on, so a live stream's
# hold never expires under it and a dead worker's expires one TTL after its last progress. Its commit
# is relaxed too: a crash loses at most the last second of a stream's progress, never credits.
_PROGRESS_SQL = f"""
    UPDATE {HOLD}
    SET progress_price_id = %(price_id)s,
        progress_provider = %(provider)s,
        progress_purpose = %(purpose)s,
        progress_input_tokens = %(input_tokens)s,
        progress_output_tokens = %(output_tokens)s,
        progress_at = %(now)s,
        expires_at = %(expires_at)s
    -- an open hold only: a closed one is left as it is, and the caller learns it from no row
    WHERE id = %(hold_id)s AND status = 'held'
    RETURNING id, {_RELAXED_COMMIT}
"""  # noqa: S608 - our table
# A hold closed (released) once: a closed hold matches nothing, so its amount is given back once.
_CLOSE_SQL = f"""
    UPDATE {HOLD}
    SET status = %(status)s, closed_at = %(now)s
    WHERE id = %(hold_id)s AND status = 'held'
    RETURNING amount
"""  # noqa: S608 - our table


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


def _on_its_own() -> bool:
    """Whether a statement run now is its own transaction (autocommit), for _RELAXED_COMMIT."""
    return not connection.in_atomic_block


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
            "on_its_own": _on_its_own(),
        },
    )
    if not rows:
        raise Wallet.DoesNotExist(f"User {user.pk} has no wallet.")
    _, allowed, balance, held_before, held_after, hold_id, wallet_id, shadow, *price_row = rows[0]
    price = None
    if model is not None:
        price = price_from_row(model=model, row=price_row if price_row[0] is not None else None)
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
        progress_price_id=None,
        progress_provider=None,
        progress_purpose=None,
        progress_input_tokens=None,
        progress_output_tokens=None,
        progress_at=None,
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
            cursor.execute(_CLOSE_SQL, {"status": CreditHold.Status.RELEASED, "now": now, "hold_id": hold.pk})
            row = cursor.fetchone()
        if row is not None:
            move(user_id=hold.wallet.user_id, amount=Decimal(0), held=-to_decimal(row[0]))
    hold.status, hold.closed_at = CreditHold.Status.RELEASED, now


def record_progress(
    *,
    hold: CreditHold,
    price: ModelPrice,
    provider: str,
    purpose: str,
    input_tokens: int,
    output_tokens: int,
) -> bool:
    """Record what the hold's open call has used so far and push its expiry one TTL on; False if it is closed.

    One autocommit statement (no wallet change: the amount held is the same). Run it outside any
    transaction: the hold's row lock must not be kept while the call goes on.
    """
    now = timezone.now()
    expires_at = now + timedelta(seconds=settings.CREDIT_HOLD_TTL_SECONDS)
    rows = execute_prepared(
        _PROGRESS_SQL,
        {
            "hold_id": hold.pk,
            "price_id": price.pk,
            "provider": provider,
            "purpose": purpose,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "now": now,
            "expires_at": expires_at,
            "on_its_own": _on_its_own(),
        },
    )
    if not rows:
        return False
    hold.progress_price, hold.progress_provider, hold.progress_purpose = price, provider, purpose
    hold.progress_input_tokens, hold.progress_output_tokens = input_tokens, output_tokens
    hold.progress_at, hold.expires_at = now, expires_at
    return True


def release_expired_holds() -> int:
    """Close every hold past its expiry: released wallet by wallet, or charged with its progress; safe to rerun."""
    now = timezone.now()
    expired = CreditHold.objects.filter(status=CreditHold.Status.HELD, expires_at__lte=now)
    user_ids = expired.filter(progress_at__isnull=True).values_list("wallet__user_id", flat=True).distinct()
    count = 0
    for user_id in list(user_ids):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(_EXPIRE_SQL, {"now": now, "user_id": user_id})
                amounts = [to_decimal(r[0]) for r in cursor.fetchall()]
            if amounts:
                move(user_id=user_id, amount=Decimal(0), held=-sum(amounts, Decimal(0)))
        count += len(amounts)
    if count:
        logger.info("expired holds released", extra={"holds": count})
    for hold_id in list(expired.filter(progress_at__isnull=False).values_list("id", flat=True)):
        count += _charge_expired(hold_id=hold_id, now=now)
    return count


def _charge_expired(*, hold_id: int, now) -> int:
    """Charge one expired hold with its last progress, capped at its amount; 0 if another run (or its call) closed it.

    The hold row is locked first (skipping one another run holds), then the wallet by the charge,
    the order charging takes them in: two runs never charge a hold twice.
    """
    with transaction.atomic():
        hold = (
            CreditHold.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("wallet__user", "progress_price")
            .filter(pk=hold_id, status=CreditHold.Status.HELD, expires_at__lte=now, progress_at__isnull=False)
            .first()
        )
        if hold is None:
            return 0
        charged = charge(
            user=hold.wallet.user,
            price=hold.progress_price,
            provider=hold.progress_provider,
            input_tokens=hold.progress_input_tokens,
            output_tokens=hold.progress_output_tokens,
            latency_ms=max(0, round((hold.progress_at - hold.created_at).total_seconds() * 1000)),
            occurred_at=hold.progress_at,
            hold=hold,
            purpose=hold.progress_purpose,
            max_cost=hold.amount,
        )
    logger.warning(
        "expired hold charged with its stream progress",
        extra={
            "hold_id": hold.pk,
            "user_id": hold.wallet.user_id,
            "llm_call_id": charged.event.pk,
            "input_tokens": hold.progress_input_tokens,
            "output_tokens": hold.progress_output_tokens,
            "cost": str(charged.event.cost),
        },
    )
    return 1
