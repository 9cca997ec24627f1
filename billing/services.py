"""Every write that moves credits: each in one transaction, the wallet moved by one UPDATE ... RETURNING."""

import logging
import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing import rollup
from billing.exceptions import (
    BillingError,
    IdempotencyConflict,
    InitiatorNotStaff,
    InvalidAmount,
    InvalidGrant,
)
from billing.models import CreditHold, CreditTransaction, LLMCallEvent, ModelPrice, Wallet
from billing.money import AmountError, parse_amount, quantize, to_decimal

logger = logging.getLogger(__name__)

GRANT_MAX = Decimal("10000")
REASON_MAX = 500
IDEMPOTENCY_KEY_MAX = 255
_PRINTABLE_ASCII = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")
STARTING_CREDITS_REASON = "Starting credits"

WALLET = Wallet._meta.db_table
HOLD = CreditHold._meta.db_table
_MOVE_SQL = (
    f"UPDATE {WALLET} SET balance = balance + %s, held = held + %s, updated_at = %s "  # noqa: S608 - our table
    "WHERE user_id = %s RETURNING id, balance"
)
# One conditional statement decides a reservation: the wallet row is locked by the UPDATE itself, so
# concurrent turns queue on it and each sees the `held` the previous one left.
_RESERVE_SQL = (
    f"UPDATE {WALLET} SET held = held - %(released)s + %(amount)s, updated_at = %(now)s "  # noqa: S608
    "WHERE user_id = %(user_id)s AND ("
    " enforcement = 'exempt'"
    " OR (enforcement = 'default' AND NOT %(enforce_default)s)"
    " OR balance - (held - %(released)s) > 0"
    ") RETURNING id, balance, held, enforcement"
)
_EXPIRE_SQL = (
    f"UPDATE {HOLD} SET status = 'expired', closed_at = %s "  # noqa: S608
    f"WHERE status = 'held' AND expires_at <= %s AND wallet_id = (SELECT id FROM {WALLET} WHERE user_id = %s) "
    "RETURNING amount"
)
# PostgreSQL's reservation in one statement, atomic on its own (no BEGIN/COMMIT round trips):
# expire the wallet's stale holds, lock the wallet (after the holds, as settle and
# release_expired_holds do), decide on the row as locked, move `held`, and insert the hold. A refused
# reservation still gives back what expired, as the multi-statement path below does.
_RESERVE_ONE_SQL = (
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
    ") SELECT cur.allowed, cur.balance, cur.held - cur.released, w.balance, w.held, h.id, h.wallet_id,"
    " h.shadow_refusal FROM cur LEFT JOIN w ON true LEFT JOIN h ON true"
)
# PostgreSQL's charge in one statement (data-modifying CTEs): the event, the hold closed, the wallet
# moved by UPDATE ... RETURNING, the ledger row chained from that balance, and the usage rollup rows.
# The hold is taken before the wallet (h feeds w), the same lock order as release_expired_holds.
_EVENT_COLUMNS = (
    "user_id, model, provider, input_tokens, output_tokens, cost, input_price_per_1k, "
    "output_price_per_1k, status, error, latency_ms, shadow_refusal, created_at"
)
_DEBIT_CTES = (
    "WITH ev AS ("  # noqa: S608 - every name below is one of our tables
    f" INSERT INTO {LLMCallEvent._meta.db_table} ({_EVENT_COLUMNS}) VALUES (%(user_id)s, %(model)s,"
    " %(provider)s, %(input_tokens)s, %(output_tokens)s, %(cost)s, %(input_price)s, %(output_price)s,"
    " 'ok', '', %(latency_ms)s, %(shadow)s, %(occurred_at)s) RETURNING id"
    "), h AS ("
    f" UPDATE {HOLD} SET status = 'settled', closed_at = %(now)s, llm_call_id = (SELECT id FROM ev)"
    " WHERE id = %(hold_id)s AND status = 'held' RETURNING amount"
    "), w AS ("
    f" UPDATE {WALLET} SET balance = balance + %(amount)s,"
    " held = held - coalesce((SELECT amount FROM h), 0), updated_at = %(now)s"
    " WHERE user_id = %(user_id)s RETURNING id, balance"
    "), tx AS ("
    f" INSERT INTO {CreditTransaction._meta.db_table} (wallet_id, kind, amount, balance_after, reason,"
    " initiated_by_id, llm_call_id, idempotency_key, created_at)"
    " SELECT w.id, 'debit', %(amount)s, w.balance, %(reason)s, NULL, ev.id, NULL, %(occurred_at)s"
    # No wallet: w is empty and the NULL wallet_id fails the whole statement (see _debit_in_one_statement).
    " FROM ev LEFT JOIN w ON true RETURNING id, wallet_id, balance_after"
    f"), {rollup.DEBIT_CTES}"
)
_DEBIT_RESULT = "ev.id, tx.id, tx.wallet_id, tx.balance_after"
_DEBIT_SQL = f"{_DEBIT_CTES} SELECT {_DEBIT_RESULT} FROM ev, tx"  # noqa: S608
_CLOSE_HOLD_SQL = (
    f"UPDATE {HOLD} SET status = %s, closed_at = %s, llm_call_id = %s "  # noqa: S608
    "WHERE id = %s AND status = 'held' RETURNING amount"
)


@dataclass(frozen=True)
class CompanionWrite:
    """The caller's own rows, written with a settle() so that they commit or roll back with the debit.

    On PostgreSQL the debit is one statement, and `ctes` (data-modifying CTEs on the caller's own
    tables, "name AS (...), ...", named parameters that do not clash with the debit's) run in that
    same statement, after the debit's CTEs: they may read the new event's id as `ev.id`, and
    `columns` (a select list over them, e.g. scalar subqueries) comes back as `ChargeResult.companion`.
    Elsewhere (SQLite, or a call that cost nothing) `fallback(event)` is called inside the debit's
    transaction instead and must write the same rows and return the same values. Billing only runs
    the caller's text; it never builds SQL for another app's tables.
    """

    ctes: str
    columns: str
    params: dict
    fallback: Callable[[LLMCallEvent], tuple]


@dataclass(frozen=True)
class ChargeResult:
    event: LLMCallEvent
    transaction: CreditTransaction | None  # None when the call cost nothing (a debit is never 0)
    balance_after: Decimal
    companion: tuple | None = None  # what a CompanionWrite returned


def _one_statement_paths() -> bool:
    """PostgreSQL runs reserve and debit as single statements; SQLite keeps the multi-statement paths."""
    return connection.vendor == "postgresql"


# Server-side prepared statements for the two single-statement paths: planning a five-part CTE costs
# more than running it, and a prepared plan is reused per connection (PgBouncer >= 1.21 keeps
# protocol-level prepared statements in transaction mode). Never more than this many different
# queries: the connection's statement cache (psycopg's prepared_max, 100) is not ours alone.
_PREPARE_ANYWAY = 10**9


def _execute_prepared(sql: str, params: dict) -> tuple | None:
    """Run one of our statements prepared, on the connection's transaction, logged like any other query."""
    with connection.cursor() as django_cursor:  # connects, checks the thread, joins the transaction
        raw = connection.connection
        # Django's psycopg cursors bind client-side and disable preparing (prepare_threshold None);
        # a server-binding cursor prepares when asked, so the threshold is lifted for this call only.
        threshold, raw.prepare_threshold = raw.prepare_threshold, _PREPARE_ANYWAY
        try:
            with psycopg.Cursor(raw) as cursor, connection.wrap_database_errors:
                if connection.queries_logged:
                    with django_cursor.debug_sql(sql, params):
                        cursor.execute(sql, params, prepare=True)
                else:
                    cursor.execute(sql, params, prepare=True)
                return cursor.fetchone()
        finally:
            raw.prepare_threshold = threshold


def _move(*, user_id: int, amount: Decimal, held: Decimal = Decimal(0)) -> tuple[int, Decimal]:
    """Add `amount` to the balance (and `held` to the holds) in one locking statement; return (id, balance)."""
    with connection.cursor() as cursor:
        cursor.execute(_MOVE_SQL, [amount, held, timezone.now(), user_id])
        row = cursor.fetchone()
    if row is None:
        raise Wallet.DoesNotExist(f"User {user_id} has no wallet.")
    return row[0], to_decimal(row[1])


def _append(
    *,
    user_id: int,
    kind: str,
    amount: Decimal,
    reason: str = "",
    initiated_by=None,
    llm_call: LLMCallEvent | None = None,
    idempotency_key: str | None = None,
    created_at: datetime | None = None,
    held: Decimal = Decimal(0),
) -> CreditTransaction:
    """Move the wallet and append its ledger row; the caller holds the transaction."""
    wallet_id, balance_after = _move(user_id=user_id, amount=amount, held=held)
    return CreditTransaction.objects.create(
        wallet_id=wallet_id,
        kind=kind,
        amount=amount,
        balance_after=balance_after,
        reason=reason,
        initiated_by=initiated_by,
        llm_call=llm_call,
        idempotency_key=idempotency_key,
        created_at=created_at or timezone.now(),
    )


def open_wallet(*, user) -> Wallet:
    """Give a new user its wallet (once) and record STARTING_CREDITS as a system grant."""
    with transaction.atomic():
        wallet, created = Wallet.objects.get_or_create(user=user)
        starting = quantize(Decimal(settings.STARTING_CREDITS))
        if created and starting > 0:
            row = _append(
                user_id=user.pk,
                kind=CreditTransaction.Kind.GRANT,
                amount=starting,
                reason=STARTING_CREDITS_REASON,
            )
            wallet.balance = row.balance_after
    return wallet


def validate_grant_amount(raw) -> Decimal:
    """A grant amount per API.md: exact decimal, at most 6 places, 0 < amount <= 10000."""
    try:
        amount = parse_amount(raw)
    except AmountError as exc:
        raise InvalidAmount(str(exc), field="amount") from exc
    if amount <= 0:
        raise InvalidAmount("Ensure this value is greater than 0.", field="amount")
    if amount > GRANT_MAX:
        raise InvalidAmount(f"Ensure this value is less than or equal to {GRANT_MAX}.", field="amount")
    return amount


def validate_reason(reason) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidGrant("A reason is required: say why these credits are granted.", field="reason")
    if len(reason) > REASON_MAX:
        raise InvalidGrant(f"Ensure the reason has no more than {REASON_MAX} characters.", field="reason")
    return reason.strip()


def validate_idempotency_key(key) -> str:
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX
        or not set(key) <= _PRINTABLE_ASCII
    ):
        raise InvalidGrant(
            f"An idempotency key is 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters.",
            field="idempotency_key",
        )
    return key


def _replay(*, user, idempotency_key: str, amount: Decimal, reason: str) -> CreditTransaction | None:
    first = (
        CreditTransaction.objects.select_related("initiated_by")
        .filter(wallet__user=user, idempotency_key=idempotency_key)
        .first()
    )
    if first is None:
        return None
    if first.amount != amount or first.reason != reason:
        raise IdempotencyConflict(
            "This idempotency key was already used for a grant with a different amount or reason; "
            "send a new key for a new grant."
        )
    first.replayed = True
    return first


def grant(
    *, user, amount, reason: str, initiated_by, idempotency_key: str | None = None
) -> CreditTransaction:
    """Grant credits once per idempotency key; the returned row has `replayed` True on a replay."""
    amount = validate_grant_amount(amount)
    reason = validate_reason(reason)
    if initiated_by is None or not initiated_by.is_staff or not initiated_by.is_active:
        raise InitiatorNotStaff("Only an active staff user can grant credits.")
    if idempotency_key is not None:
        idempotency_key = validate_idempotency_key(idempotency_key)
        found = _replay(user=user, idempotency_key=idempotency_key, amount=amount, reason=reason)
        if found is not None:
            return found
    try:
        with transaction.atomic():
            row = _append(
                user_id=user.pk,
                kind=CreditTransaction.Kind.GRANT,
                amount=amount,
                reason=reason,
                initiated_by=initiated_by,
                idempotency_key=idempotency_key,
            )
    except IntegrityError:
        # Two requests raced on one key: the unique constraint let one through; answer with it.
        found = idempotency_key and _replay(
            user=user, idempotency_key=idempotency_key, amount=amount, reason=reason
        )
        if not found:
            raise
        return found
    row.replayed = False
    logger.info(
        "credits granted",
        extra={
            "user_id": user.pk,
            "amount": str(amount),
            "initiated_by": initiated_by.pk,
            "transaction_id": row.pk,
        },
    )
    return row


def compute_cost(*, price: ModelPrice, input_tokens: int, output_tokens: int) -> Decimal:
    """tokens / 1000 x price per 1k, per direction, summed, quantized once."""
    raw = (
        Decimal(input_tokens) * price.input_price_per_1k + Decimal(output_tokens) * price.output_price_per_1k
    ) / 1000
    return quantize(raw)


def charge(
    *,
    user,
    price: ModelPrice,
    provider: str,
    input_tokens: int,
    output_tokens: int,
    latency_ms: int = 0,
    occurred_at: datetime | None = None,
) -> ChargeResult:
    """Record the call with its price snapshot and debit its cost, atomically; the balance may go negative."""
    return _record_and_debit(
        user=user,
        price=price,
        provider=provider,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_ms=latency_ms,
        occurred_at=occurred_at,
    )


def _record_and_debit(
    *,
    user,
    price: ModelPrice,
    provider: str,
    input_tokens: int,
    output_tokens: int,
    latency_ms: int,
    occurred_at: datetime | None = None,
    hold: CreditHold | None = None,
    companion: CompanionWrite | None = None,
) -> ChargeResult:
    cost = compute_cost(price=price, input_tokens=input_tokens, output_tokens=output_tokens)
    occurred_at = occurred_at or timezone.now()
    reason = f"{price.model}: {input_tokens} in / {output_tokens} out tokens"
    # The event with its price snapshot, built once; each path below writes it.
    event = LLMCallEvent(
        user=user,
        model=price.model,
        provider=provider,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost,
        input_price_per_1k=price.input_price_per_1k,
        output_price_per_1k=price.output_price_per_1k,
        status=LLMCallEvent.Status.OK,
        latency_ms=latency_ms,
        shadow_refusal=bool(hold and hold.shadow_refusal),
        created_at=occurred_at,
    )
    if cost > 0 and _one_statement_paths():
        return _debit_in_one_statement(event=event, hold=hold, reason=reason, companion=companion)
    # No savepoint: nothing here is retried, so inside a caller's transaction (the turn) a failure
    # rolls back the whole turn, and the hot path saves a SAVEPOINT/RELEASE round trip pair.
    with transaction.atomic(savepoint=False):
        event.save(force_insert=True)
        released = (
            _close_hold(hold=hold, status=CreditHold.Status.SETTLED, llm_call=event) if hold else Decimal(0)
        )
        if cost == 0:  # a debit is never zero: the call is recorded, the wallet only drops the hold
            _, balance = _move(user_id=user.pk, amount=Decimal(0), held=-released)
            result = ChargeResult(event=event, transaction=None, balance_after=balance)
        else:
            row = _append(
                user_id=user.pk,
                kind=CreditTransaction.Kind.DEBIT,
                amount=-cost,
                reason=reason,
                llm_call=event,
                created_at=occurred_at,
                held=-released,
            )
            result = ChargeResult(event=event, transaction=row, balance_after=row.balance_after)
        if companion is not None:
            result = replace(result, companion=companion.fallback(event))
        # Last, as in the one-statement debit: the hold, the wallet, the companion's rows (its
        # CTEs are read by that statement's result), then the rollups' shared row (see add_event).
        rollup.add_event(event)
    return result


def _debit_in_one_statement(
    *, event: LLMCallEvent, hold: CreditHold | None, reason: str, companion: CompanionWrite | None
) -> ChargeResult:
    """The PostgreSQL hot path: the same rows as the ORM path above (and the companion's), one statement."""
    now = timezone.now()
    sql, extra = _DEBIT_SQL, {}
    if companion is not None:
        # The caller's text is a constant of its module (parameters are bound, never formatted in).
        sql = f"{_DEBIT_CTES}, {companion.ctes} SELECT {_DEBIT_RESULT}, {companion.columns} FROM ev, tx"  # noqa: S608
        extra = companion.params
    # One statement is atomic on its own: no BEGIN/COMMIT round trips around it. A missing wallet
    # (users loaded raw, without open_wallet) fails the ledger INSERT's NOT NULL, which rolls back
    # everything the statement wrote.
    try:
        row = _execute_prepared(
            sql,
            {
                **extra,
                "user_id": event.user_id,
                "model": event.model,
                "provider": event.provider,
                "input_tokens": event.input_tokens,
                "output_tokens": event.output_tokens,
                "cost": event.cost,
                "input_price": event.input_price_per_1k,
                "output_price": event.output_price_per_1k,
                "latency_ms": event.latency_ms,
                "shadow": event.shadow_refusal,
                "shadow_count": 1 if event.shadow_refusal else 0,
                "occurred_at": event.created_at,
                "now": now,
                "hold_id": hold.pk if hold else None,
                "amount": -event.cost,
                "reason": reason,
                "day": rollup.local_day(event.created_at),
            },
        )
    except IntegrityError as exc:
        if getattr(exc.__cause__, "sqlstate", None) == psycopg.errors.NotNullViolation.sqlstate and (
            getattr(getattr(exc.__cause__, "diag", None), "table_name", None)
            == CreditTransaction._meta.db_table
        ):
            raise Wallet.DoesNotExist(f"User {event.user_id} has no wallet.") from exc
        raise
    event_id, transaction_id, wallet_id, balance_after = row[:4]
    if hold is not None:
        hold.status, hold.closed_at = CreditHold.Status.SETTLED, now
    event.id = event_id
    _fetched(event)
    ledger_row = _fetched(
        CreditTransaction(
            id=transaction_id,
            wallet_id=wallet_id,
            kind=CreditTransaction.Kind.DEBIT,
            amount=-event.cost,
            balance_after=to_decimal(balance_after),
            reason=reason,
            initiated_by=None,
            llm_call=event,
            idempotency_key=None,
            created_at=event.created_at,
        )
    )
    return ChargeResult(
        event=event,
        transaction=ledger_row,
        balance_after=ledger_row.balance_after,
        companion=tuple(row[4:]) if companion is not None else None,
    )


def _fetched(instance):
    """Mark an instance built from RETURNING values as a saved row (it is one), as the ORM would."""
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance


def record_failed_call(
    *,
    user,
    model: str,
    provider: str,
    error: str,
    latency_ms: int = 0,
    price: ModelPrice | None = None,
    hold: CreditHold | None = None,
) -> LLMCallEvent:
    """Record a failed provider call (status error, zero cost, no ledger row) and release its hold."""
    with transaction.atomic():
        event = LLMCallEvent.objects.create(
            user=user,
            model=model,
            provider=provider,
            cost=0,
            input_price_per_1k=price.input_price_per_1k if price else 0,
            output_price_per_1k=price.output_price_per_1k if price else 0,
            status=LLMCallEvent.Status.ERROR,
            error=error[:500],
            latency_ms=latency_ms,
            shadow_refusal=bool(hold and hold.shadow_refusal),
        )
        if hold is not None:
            released = _close_hold(hold=hold, status=CreditHold.Status.RELEASED, llm_call=event)
            if released:
                _move(user_id=user.pk, amount=Decimal(0), held=-released)
        rollup.add_event(event)  # after the hold and the wallet, as the one-statement debit
    return event


# --- Holds: reserve before the model call, settle or release after it --------------------------


@dataclass(frozen=True)
class Reservation:
    hold: CreditHold | None  # None when refused
    balance: Decimal
    available: Decimal  # balance - held, before this reservation
    refused: bool = False

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


def _expire_holds(*, user_id: int, now: datetime) -> tuple[int, Decimal]:
    """Mark the wallet's holds past their expiry as expired; return (count, amount) to drop from `held`."""
    with connection.cursor() as cursor:
        cursor.execute(_EXPIRE_SQL, [now, now, user_id])
        amounts = [to_decimal(r[0]) for r in cursor.fetchall()]
    return len(amounts), sum(amounts, Decimal(0))


def _close_hold(*, hold: CreditHold, status: str, llm_call: LLMCallEvent | None) -> Decimal:
    """Close a hold that is still open; return its amount, or 0 if it was closed already (e.g. expired)."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_CLOSE_HOLD_SQL, [status, now, llm_call.pk if llm_call else None, hold.pk])
        row = cursor.fetchone()
    hold.status, hold.closed_at = status, now
    return to_decimal(row[0]) if row else Decimal(0)


def reserve(*, user, amount: Decimal) -> Reservation:
    """Hold a turn's estimated cost in one conditional statement; refused when enforced and available <= 0."""
    now = timezone.now()
    amount = quantize(Decimal(amount))
    if _one_statement_paths():
        return _reserve_in_one_statement(user=user, amount=amount, now=now)
    with transaction.atomic():
        _, released = _expire_holds(user_id=user.pk, now=now)
        with connection.cursor() as cursor:
            cursor.execute(
                _RESERVE_SQL,
                {
                    "released": released,
                    "amount": amount,
                    "now": now,
                    "user_id": user.pk,
                    "enforce_default": bool(settings.CREDIT_ENFORCEMENT_ENABLED),
                },
            )
            row = cursor.fetchone()
        if row is None:  # refused (or no wallet): keep the expiry, answer with the wallet as it is
            if released:
                _move(user_id=user.pk, amount=Decimal(0), held=-released)
            balance, held = Wallet.objects.values_list("balance", "held").get(user_id=user.pk)
            balance, available = to_decimal(balance), to_decimal(balance) - to_decimal(held)
            return _refused(user=user, balance=balance, available=available)
        wallet_id, balance, held, enforcement = row
        balance = to_decimal(balance)
        available = balance - (to_decimal(held) - amount)
        shadow = (
            available <= 0
            and enforcement == Wallet.Enforcement.DEFAULT
            and not settings.CREDIT_ENFORCEMENT_ENABLED
            and settings.CREDIT_ENFORCEMENT_SHADOW
        )
        hold = CreditHold.objects.create(
            wallet_id=wallet_id,
            amount=amount,
            shadow_refusal=shadow,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.CREDIT_HOLD_TTL_SECONDS),
        )
    return _admitted(user=user, hold=hold, balance=balance, available=available)


def _refused(*, user, balance: Decimal, available: Decimal) -> Reservation:
    logger.info(
        "turn refused: insufficient credits",
        extra={"user_id": user.pk, "balance": str(balance), "available": str(available)},
    )
    return Reservation(hold=None, balance=balance, available=available, refused=True)


def _admitted(*, user, hold: CreditHold, balance: Decimal, available: Decimal) -> Reservation:
    if hold.shadow_refusal:
        logger.info(
            "shadow refusal: enforcement would have refused this turn",
            extra={
                "user_id": user.pk,
                "balance": str(balance),
                "available": str(available),
                "hold_id": hold.pk,
            },
        )
    return Reservation(hold=hold, balance=balance, available=available)


def _reserve_in_one_statement(*, user, amount: Decimal, now: datetime) -> Reservation:
    """reserve() on PostgreSQL: the same decision and rows as the multi-statement path, one round trip."""
    expires_at = now + timedelta(seconds=settings.CREDIT_HOLD_TTL_SECONDS)
    enforce_default = bool(settings.CREDIT_ENFORCEMENT_ENABLED)
    row = _execute_prepared(
        _RESERVE_ONE_SQL,
        {
            "now": now,
            "user_id": user.pk,
            "amount": amount,
            "expires_at": expires_at,
            "enforce_default": enforce_default,
            "shadow_default": not enforce_default and bool(settings.CREDIT_ENFORCEMENT_SHADOW),
        },
    )
    if row is None:
        raise Wallet.DoesNotExist(f"User {user.pk} has no wallet.")
    allowed, balance, held_before, _, held_after, hold_id, wallet_id, shadow = row
    balance = to_decimal(balance)
    if not allowed:
        available = balance - to_decimal(held_before)
        return _refused(user=user, balance=balance, available=available)
    available = balance - (to_decimal(held_after) - amount)
    hold = CreditHold(
        id=hold_id,
        wallet_id=wallet_id,
        amount=amount,
        status=CreditHold.Status.HELD,
        shadow_refusal=shadow,
        created_at=now,
        expires_at=expires_at,
    )
    _fetched(hold)
    return _admitted(user=user, hold=hold, balance=balance, available=available)


def settle(
    *,
    hold: CreditHold,
    user,
    price: ModelPrice,
    provider: str,
    input_tokens: int,
    output_tokens: int,
    latency_ms: int = 0,
    occurred_at: datetime | None = None,
    companion: CompanionWrite | None = None,
) -> ChargeResult:
    """Close the hold, record the event and debit the actual cost, in one transaction.

    `companion`: the caller's rows to write in that same transaction (see CompanionWrite).
    """
    return _record_and_debit(
        user=user,
        price=price,
        provider=provider,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_ms=latency_ms,
        occurred_at=occurred_at,
        hold=hold,
        companion=companion,
    )


def release(*, hold: CreditHold) -> None:
    """Give back a hold that will not be settled (idempotent: a closed hold is left as it is)."""
    with transaction.atomic():
        released = _close_hold(hold=hold, status=CreditHold.Status.RELEASED, llm_call=None)
        if released:
            _move(user_id=hold.wallet.user_id, amount=Decimal(0), held=-released)


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
            n, released = _expire_holds(user_id=user_id, now=now)
            if n:
                _move(user_id=user_id, amount=Decimal(0), held=-released)
        count += n
    if count:
        logger.info("expired holds released", extra={"holds": count})
    return count


def set_enforcement(*, user, enforcement: str, changed_by) -> Wallet:
    """Change a wallet's enforcement override (default/exempt/enforced), logged with the staff user."""
    if enforcement not in Wallet.Enforcement.values:
        choices = ", ".join(Wallet.Enforcement.values)
        raise BillingError(
            f"Unknown enforcement {enforcement!r}; choose one of: {choices}.", field="enforcement"
        )
    if changed_by is None or not changed_by.is_staff:
        raise InitiatorNotStaff("Only a staff user can change a wallet's enforcement.")
    with transaction.atomic():
        wallet = Wallet.objects.select_for_update().get(user=user)
        previous = wallet.enforcement
        if previous != enforcement:
            wallet.enforcement = enforcement
            wallet.save(update_fields=["enforcement", "updated_at"])
    if previous != enforcement:
        logger.info(
            "wallet enforcement changed",
            extra={
                "user_id": user.pk,
                "from": previous,
                "to": enforcement,
                "changed_by": changed_by.pk,
                "changed_by_username": changed_by.username,
            },
        )
    return wallet
