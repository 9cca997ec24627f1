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

from billing.exceptions import InsufficientCredits, LimitReached
from billing.models import CreditHold, CreditLot, ModelPrice, SpendLimit, Wallet
from billing.periods import PERIOD_START_SQL, next_reset, period_params
from billing.selectors import price_from_row
from billing.services._wallet import WALLET, move
from billing.services.charging import HOLD_STILL_OPEN, charge
from billing.services.limits import give_back_key_hold
from core.db import RELAXED_COMMIT, attnames, execute_prepared, loaded, relaxed_commit_params, selected
from core.money import quantize, to_decimal

logger = logging.getLogger(__name__)

HOLD = CreditHold._meta.db_table
LIMIT = SpendLimit._meta.db_table
PRICE = ModelPrice._meta.db_table
LOT = CreditLot._meta.db_table
# The reservation and a stream's progress commit relaxed when run on their own (core.db's
# RELAXED_COMMIT): a hold moves no credits, and a crash that loses one loses the turn that needed it
# too. Every charge still commits synchronously, flushing the reservation's WAL with its own.
# A wallet's stale holds, closed as expired, returning the amounts they held (the caller gives them
# back to the wallet). A hold with progress is owed a charge, and a hold that counts against an API
# key's limit must give that back too: both are left to release_expired_holds (their amount stays
# held until then: at most a minute). Run on its own by release_expired_holds, and as the
# reservation's first step.
_EXPIRE_SQL = f"""
        UPDATE {HOLD}
        SET status = 'expired', closed_at = %(now)s
        WHERE status = 'held' AND expires_at <= %(now)s AND progress_at IS NULL AND spend_limit_id IS NULL
            AND wallet_id = (SELECT id FROM {WALLET} WHERE user_id = %(user_id)s)
        RETURNING amount"""  # noqa: S608 - our tables
# The reservation in one statement, atomic on its own (no BEGIN/COMMIT round trips). Concurrent
# reservations queue on the wallet row and each sees the `held` the previous one left (and, on the
# limit rows it locks next, the spending), so a burst cannot pass the balance or a limit by more
# than one hold. A refused reservation still gives back what expired. With a model, the statement
# also reads the model's active price (the price the call is charged at). Its commit is relaxed
# (RELAXED_COMMIT).
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
    --    them in).
    locked_wallet AS (
        SELECT wallet.id, wallet.balance, wallet.held, wallet.enforcement,
            released.amount AS released, released.holds AS expired_count
        FROM {WALLET} wallet, released
        WHERE wallet.user_id = %(user_id)s
        FOR UPDATE OF wallet
    ),
    -- 3b. What the balance still counts of lots past their expiry that the sweep (expire_lots,
    --    every minute) has not written off yet: no charge can burn it, so it is not available.
    --    Locked after the wallet (the sub-select reads locked_wallet first), so a lot a sweep
    --    emptied while this statement waited for the wallet is re-read as emptied: the sweep's
    --    expiry, already out of the balance, is not taken off twice.
    dead_lots AS (
        SELECT coalesce(sum(due.remaining), 0) AS amount
        FROM (
            SELECT lot.remaining FROM {LOT} lot
            WHERE lot.wallet_id = (SELECT id FROM locked_wallet)
                AND lot.remaining > 0 AND lot.expires_at <= %(now)s
            FOR UPDATE OF lot
        ) AS due
    ),
    -- 4. The limits the call counts against, locked after the wallet (the argument reads
    --    locked_wallet first), so each row is read as the last reservation or charge left it: the
    --    API key's (with a key) and the wallet's spending caps. A function, not a read in this
    --    statement, so a cap set while it waited for the wallet is read (billing migration 0028).
    --    `charged` is the period's charges: none when the row's counter belongs to a past period
    --    (the calendar resets it, no job).
    locked_limits AS (
        SELECT spend_limit.id, spend_limit.kind, spend_limit.amount, spend_limit.period,
            spend_limit.held,
            CASE WHEN spend_limit.period_start IS NOT DISTINCT FROM {PERIOD_START_SQL}
                THEN spend_limit.spent ELSE 0
            END AS charged
        FROM billing_call_limits((SELECT id FROM locked_wallet), %(spend_limit_id)s) AS spend_limit
    ),
    -- 5. The first limit whose period's spending (charges plus open holds: the key's own, all the
    --    wallet's for a cap) has reached its amount, the key's before the caps: it refuses the call.
    full_limit AS (
        SELECT id, kind, amount, period, spending
        FROM (
            SELECT locked_limits.*,
                locked_limits.charged + CASE WHEN locked_limits.kind = 'key' THEN locked_limits.held
                    ELSE locked_wallet.held - locked_wallet.released
                END AS spending
            FROM locked_limits, locked_wallet
        ) AS limit_spending
        WHERE amount IS NOT NULL AND spending >= amount
        ORDER BY kind = 'key' DESC, id
        LIMIT 1
    ),
    -- 6. The decision: the wallet allows it (exempt, enforcement off for it, or something left once
    --    the expired holds are given back and the expired lots left out) and no limit is full
    --    (limits bind whatever enforcement says).
    decision AS (
        SELECT locked_wallet.*, dead_lots.amount AS dead,
            (
                locked_wallet.enforcement = 'exempt'
                OR (locked_wallet.enforcement = 'default' AND NOT %(enforce_default)s)
                OR locked_wallet.balance - dead_lots.amount
                    - (locked_wallet.held - locked_wallet.released) > 0
            ) AND NOT EXISTS (SELECT FROM full_limit) AS allowed
        FROM locked_wallet, dead_lots
    ),
    -- 7. `held` moved: the expired holds given back, the new one added when allowed (a refused
    --    reservation with nothing expired leaves the wallet as it is).
    moved_wallet AS (
        UPDATE {WALLET} wallet
        SET held = wallet.held - decision.released
                + CASE WHEN decision.allowed THEN %(amount)s ELSE 0 END,
            updated_at = %(now)s
        FROM decision
        WHERE wallet.id = decision.id AND (decision.allowed OR decision.expired_count > 0)
        RETURNING wallet.id, wallet.balance, wallet.held, wallet.enforcement, decision.allowed, decision.dead
    ),
    -- 8. The key's limit holds the call too, when allowed (a cap reads the wallet's `held`).
    moved_key_limit AS (
        UPDATE {LIMIT} spend_limit
        SET held = spend_limit.held + %(amount)s, updated_at = %(now)s
        FROM moved_wallet
        WHERE spend_limit.id = %(spend_limit_id)s AND moved_wallet.allowed
    ),
    -- 9. The hold, when allowed: a shadow refusal when enforcement is off but would have refused.
    new_hold AS (
        INSERT INTO {HOLD} (wallet_id, amount, status, shadow_refusal, created_at, expires_at, spend_limit_id)
        SELECT moved_wallet.id, %(amount)s, 'held',
            (
                moved_wallet.balance - moved_wallet.dead - (moved_wallet.held - %(amount)s) <= 0
                AND moved_wallet.enforcement = 'default' AND %(shadow_default)s
            ),
            %(now)s, %(expires_at)s, %(spend_limit_id)s
        FROM moved_wallet
        WHERE moved_wallet.allowed
        RETURNING id, wallet_id, shadow_refusal
    )
    -- 10. The commit relaxed; the decision, the balance, `held` before and after, the hold, the
    --     expired lots' credits, the full limit that refused (nulls when none did), and the model's
    --     active price (all nulls when it has none).
    SELECT {RELAXED_COMMIT},
        decision.allowed, decision.balance, decision.held - decision.released,
        moved_wallet.held, new_hold.id, new_hold.wallet_id, new_hold.shadow_refusal, decision.dead,
        full_limit.kind, full_limit.amount, full_limit.period, full_limit.spending,
        {selected(ModelPrice, "active_price")}
    FROM decision
    LEFT JOIN moved_wallet ON true
    LEFT JOIN new_hold ON true
    LEFT JOIN full_limit ON true
    LEFT JOIN {PRICE} active_price ON active_price.model = %(model)s AND active_price.active
"""  # noqa: S608 - our tables
# A heartbeat as much as a record: each progress pushes the expiry one TTL on, so a live stream's
# hold never expires under it and a dead worker's expires one TTL after its last progress. Its commit
# is relaxed too: a crash loses at most the last second of a stream's progress, never credits.
_PROGRESS_SQL = f"""
    UPDATE {HOLD}
    SET progress_price_id = %(price_id)s,
        progress_input_price_per_1k = %(input_price)s,
        progress_output_price_per_1k = %(output_price)s,
        progress_provider = %(provider)s,
        progress_purpose = %(purpose)s,
        progress_input_tokens = %(input_tokens)s,
        progress_output_tokens = %(output_tokens)s,
        progress_at = %(now)s,
        expires_at = %(expires_at)s
    -- an open hold only: a closed one is left as it is, and the caller learns it from no row
    WHERE id = %(hold_id)s AND {HOLD_STILL_OPEN}
    RETURNING id, {RELAXED_COMMIT}
"""  # noqa: S608 - our table
# A hold closed (released) once: a closed hold matches nothing, so its amount is given back once
# (to the wallet, and to the key's limit it counted against).
_CLOSE_SQL = f"""
    UPDATE {HOLD}
    SET status = %(status)s, closed_at = %(now)s
    WHERE id = %(hold_id)s AND {HOLD_STILL_OPEN}
    RETURNING amount, spend_limit_id
"""  # noqa: S608 - our table


@dataclass(frozen=True)
class FullLimit:
    """The spend limit that refused a reservation: its kind, amount, period and the period's spending."""

    kind: str
    amount: Decimal
    period: str | None
    spending: Decimal


@dataclass(frozen=True)
class Reservation:
    hold: CreditHold | None  # None when refused
    balance: Decimal
    available: Decimal  # balance - held - credits of lots expired but not yet swept, before this reservation
    refused: bool = False
    price: ModelPrice | None = None  # with `model`: its active price as reserved (None: it has none)
    full_limit: FullLimit | None = None  # refused by a key's limit or a spending cap, not the wallet

    @property
    def shadow_refusal(self) -> bool:
        return bool(self.hold and self.hold.shadow_refusal)

    def refusal(self) -> InsufficientCredits:
        """The 402 for a refused reservation: the limit that refused it, else the wallet."""
        if self.full_limit is None:
            return InsufficientCredits(balance=self.balance, available=self.available)
        limit = self.full_limit
        return LimitReached(
            source="key_limit" if limit.kind == SpendLimit.Kind.KEY else "spend_cap",
            balance=self.balance,
            available=self.available,
            limit=limit.amount,
            spending=limit.spending,
            reset_at=next_reset(limit.period),
        )


def reserve(
    *, user, amount: Decimal, model: str | None = None, spend_limit_id: int | None = None
) -> Reservation:
    """Hold a call's estimated cost in one conditional statement; refused when enforced and available <= 0
    (the balance less what is held and what lots past their expiry still count, until the sweep),
    or when the key's limit (`spend_limit_id`) or a spending cap of the wallet is already reached.

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
            "spend_limit_id": spend_limit_id,
            **relaxed_commit_params(),
            **period_params(now),
        },
    )
    if not rows:
        raise Wallet.DoesNotExist(f"User {user.pk} has no wallet.")
    (_, allowed, balance, held_before, held_after, hold_id, wallet_id, shadow, dead, *rest) = rows[0]
    limit_kind, limit_amount, limit_period, limit_spending, *price_row = rest
    price = None
    if model is not None:
        price = price_from_row(model=model, row=price_row if price_row[0] is not None else None)
    balance, dead = to_decimal(balance), to_decimal(dead)
    if not allowed:
        available = balance - dead - to_decimal(held_before)
        full_limit = None
        if limit_kind is not None:
            full_limit = FullLimit(
                kind=limit_kind,
                amount=to_decimal(limit_amount),
                period=limit_period,
                spending=to_decimal(limit_spending),
            )
        logger.warning(
            "call refused: insufficient credits" if full_limit is None else "call refused: limit reached",
            extra={
                "user_id": user.pk,
                "balance": str(balance),
                "available": str(available),
                "limit_kind": limit_kind,
                "spend_limit_id": spend_limit_id,
            },
        )
        return Reservation(
            hold=None, balance=balance, available=available, refused=True, price=price, full_limit=full_limit
        )
    available = balance - dead - (to_decimal(held_after) - amount)
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
        progress_input_price_per_1k=None,
        progress_output_price_per_1k=None,
        spend_limit_id=spend_limit_id,
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
    _close(hold=hold, status=CreditHold.Status.RELEASED)


def _close(*, hold: CreditHold, status: str) -> bool:
    """Close an open hold without a charge, giving its amount back to the wallet and to its key's
    limit, in that order (charging's); False if it was closed already."""
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_CLOSE_SQL, {"status": status, "now": now, "hold_id": hold.pk})
            row = cursor.fetchone()
        if row is not None:
            amount, spend_limit_id = to_decimal(row[0]), row[1]
            move(user_id=hold.wallet.user_id, amount=Decimal(0), held=-amount)
            if spend_limit_id is not None:
                give_back_key_hold(spend_limit_id=spend_limit_id, amount=amount)
    hold.status, hold.closed_at = status, now
    return row is not None


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
            "input_price": price.input_price_per_1k,
            "output_price": price.output_price_per_1k,
            "provider": provider,
            "purpose": purpose,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "now": now,
            "expires_at": expires_at,
            **relaxed_commit_params(),
        },
    )
    if not rows:
        return False
    hold.progress_price, hold.progress_provider, hold.progress_purpose = price, provider, purpose
    hold.progress_input_price_per_1k = price.input_price_per_1k
    hold.progress_output_price_per_1k = price.output_price_per_1k
    hold.progress_input_tokens, hold.progress_output_tokens = input_tokens, output_tokens
    hold.progress_at, hold.expires_at = now, expires_at
    return True


def release_expired_holds() -> int:
    """Close every hold past its expiry: released wallet by wallet, or charged with its progress; safe to rerun."""
    now = timezone.now()
    expired = CreditHold.objects.filter(status=CreditHold.Status.HELD, expires_at__lte=now)
    user_ids = (
        expired.filter(progress_at__isnull=True, spend_limit__isnull=True)
        .values_list("wallet__user_id", flat=True)
        .distinct()
    )
    count = 0
    for user_id in list(user_ids):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(_EXPIRE_SQL, {"now": now, "user_id": user_id})
                amounts = [to_decimal(r[0]) for r in cursor.fetchall()]
            if amounts:
                move(user_id=user_id, amount=Decimal(0), held=-sum(amounts, Decimal(0)))
        count += len(amounts)
    # Holds of API keys give their amount back to the key's limit too: closed one by one.
    for hold in expired.filter(progress_at__isnull=True, spend_limit__isnull=False).select_related("wallet"):
        count += _close(hold=hold, status=CreditHold.Status.EXPIRED)
    if count:
        logger.info("expired holds released", extra={"holds": count})
    for hold_id in list(expired.filter(progress_at__isnull=False).values_list("id", flat=True)):
        count += _charge_expired(hold_id=hold_id, now=now)
    return count


def _reserved_price(hold: CreditHold) -> ModelPrice:
    """The price an expired hold's call is charged at: its price row with the unit prices the call
    was reserved at (the row may have been edited since), where its progress recorded them."""
    price = hold.progress_price
    if hold.progress_input_price_per_1k is None:  # progress recorded before billing 0029
        return price
    return loaded(
        ModelPrice,
        **{
            **{name: getattr(price, name) for name in attnames(ModelPrice)},
            "input_price_per_1k": hold.progress_input_price_per_1k,
            "output_price_per_1k": hold.progress_output_price_per_1k,
        },
    )


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
            price=_reserved_price(hold),
            provider=hold.progress_provider,
            input_tokens=hold.progress_input_tokens,
            output_tokens=hold.progress_output_tokens,
            latency_ms=max(0, round((hold.progress_at - hold.created_at).total_seconds() * 1000)),
            occurred_at=hold.progress_at,
            hold=hold,
            purpose=hold.progress_purpose,
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
