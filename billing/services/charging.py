"""Recording model calls: the metered event, its debit, its hold closed and the usage rollups, together."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cached_property, lru_cache

from django.db import DatabaseError, transaction
from django.utils import timezone

from billing import rollup
from billing.models import CreditHold, CreditTransaction, LLMCallEvent, ModelPrice, Wallet
from billing.periods import period_params
from billing.selectors import low_balance_threshold
from billing.services._wallet import WALLET
from billing.services.crossings import record_crossings
from billing.services.limits import CAP_ALERT_PERCENTS, record_cap_alerts
from core.db import execute_prepared, loaded
from core.money import quantize, to_decimal

_EVENT_COLUMNS = (
    "user_id, model, provider, input_tokens, output_tokens, cost, input_price_per_1k, "
    "output_price_per_1k, status, error, latency_ms, shadow_refusal, purpose, used_fallback, spend_limit_id, "
    "end_user, created_at"
)
# "The hold named by its key is still open", for the statements that close or update one hold. Not
# `status = 'held'`: that implies the predicate of the partial index of open holds
# (credithold_open_idx), so the planner may find the hold by scanning every open one, and a generic
# plan made while few were open (the index looks tiny) stays with a pooled connection when thousands
# are: 1.9 ms a statement at 20,000 open holds, against a few microseconds by the key. Naming the
# closed statuses (the model's own list) implies nothing about it, so the hold is read by its key.
HOLD_STILL_OPEN = "status NOT IN ({})".format(
    ", ".join(f"'{status}'" for status in CreditHold.Status.values if status != CreditHold.Status.HELD)
)

# The SQLSTATE billing_commits_alone aborts the charge's statement with (billing migration 0026) when,
# sent on its own, its move would cross a line whose event is recorded in a transaction.
CROSSES_A_LINE = "CD001"


# Every recorded call, successful or failed, is this one statement (data-modifying CTEs). The hold
# is locked before the wallet (closed_hold feeds moved_wallet), the order release_expired_holds and
# reserve take them in; the rollup rows come last (billing.rollup.CALL_CTES, which also reads the
# parameters day, user_id, model and the figures').
_RECORD_SQL = f"""
    WITH
    -- 1. The event, with the unit prices it was charged at.
    call_event AS (
        INSERT INTO {LLMCallEvent._meta.db_table} ({_EVENT_COLUMNS})
        VALUES (%(user_id)s, %(model)s, %(provider)s, %(input_tokens)s, %(output_tokens)s, %(cost)s,
            %(input_price)s, %(output_price)s, %(status)s, %(error)s, %(latency_ms)s, %(shadow)s,
            %(purpose)s, %(used_fallback)s, %(spend_limit_id)s, %(end_user)s, %(occurred_at)s)
        RETURNING id
    ),
    -- 2. Its hold closed (settled, or released for a failed call), if it is still open.
    closed_hold AS (
        UPDATE {CreditHold._meta.db_table}
        SET status = %(hold_status)s, closed_at = %(now)s, llm_call_id = (SELECT id FROM call_event)
        WHERE id = %(hold_id)s AND {HOLD_STILL_OPEN}
        RETURNING amount, spend_limit_id
    ),
    -- 3. The wallet moved by the cost and freed of the hold; RETURNING gives the balance after.
    moved_wallet AS (
        UPDATE {WALLET}
        SET balance = balance + %(amount)s,
            held = held - coalesce((SELECT amount FROM closed_hold), 0),
            updated_at = %(now)s
        WHERE user_id = %(user_id)s
        RETURNING id, balance
    ),
    -- 4. The limits the call counts against, counted after the wallet's lock was granted (the
    --    arguments read moved_wallet first): the cost added to the period's charges of the key's
    --    limit (its hold given back) and of the wallet's caps. A function, not a CTE over the limits,
    --    so a cap set while this statement waited for the wallet is counted (billing migration 0028).
    moved_limits AS (
        SELECT * FROM billing_count_call(
            (SELECT id FROM moved_wallet), %(spend_limit_id)s, %(cost)s,
            (SELECT spend_limit_id FROM closed_hold), (SELECT amount FROM closed_hold),
            %(day_start)s, %(week_start)s, %(month_start)s, %(now)s
        )
    ),
    -- 5. The debit row chained from that balance; none when the call cost nothing (a debit is never 0).
    debit_row AS (
        INSERT INTO {CreditTransaction._meta.db_table} (wallet_id, kind, amount, balance_after, reason,
            initiated_by_id, llm_call_id, idempotency_key, created_at)
        SELECT moved_wallet.id, 'debit', %(amount)s, moved_wallet.balance, %(reason)s,
            NULL, call_event.id, NULL, %(occurred_at)s
        FROM call_event, moved_wallet
        WHERE %(amount)s < 0
        RETURNING id
    ),
    -- 6. The debit burned from the wallet's live lots in their order, each lot's part recorded as an
    --    allocation, the rest put on the wallet's debt. A function, not a CTE over the lots: its
    --    statements read the lots after moved_wallet's lock was granted (billing.services.lots says why).
    burned_lots AS (
        SELECT billing_burn_lots(moved_wallet.id, debit_row.id, %(cost)s, %(now)s) AS to_debt
        FROM moved_wallet, debit_row
    ),
    -- 7. The usage rollups.
    {rollup.CALL_CTES}
    -- 8. A caller's own rows, when it gave a ThenWrite (its CTEs replace this line).
    -- The event, the wallet (none: the user has no wallet) with its balance, the debit (none: free),
    -- and the caps as counted (for their alerts; none without caps), money as text; then the guard.
    SELECT call_event.id, moved_wallet.id, moved_wallet.balance, debit_row.id,
        (
            SELECT json_agg(json_build_array(id, amount::text, spent::text, counted::text, period_start,
                alerted_percent, alerted_period_start))
            FROM moved_limits
            WHERE kind <> 'key' AND amount IS NOT NULL
        ),
        -- 9. Sent on its own (%(alone)s), the statement commits alone only if its move stays on one
        --    side of every line whose crossing is recorded in Python, under the wallet's lock: the
        --    low-balance threshold, zero, and each cap's alert percents. Else billing_commits_alone
        --    aborts it (nothing written) and _record makes the charge again in a transaction.
        billing_commits_alone(NOT %(alone)s OR (
            (moved_wallet.balance - %(amount)s > %(low_balance)s) = (moved_wallet.balance > %(low_balance)s)
            AND (moved_wallet.balance - %(amount)s > 0) = (moved_wallet.balance > 0)
            AND NOT EXISTS (
                SELECT FROM moved_limits, unnest(%(alert_percents)s::int[]) AS alert (percent)
                WHERE moved_limits.kind <> 'key' AND moved_limits.amount > 0
                    AND (moved_limits.spent - moved_limits.counted) * 100 < moved_limits.amount * alert.percent
                    AND moved_limits.amount * alert.percent <= moved_limits.spent * 100
            )
        ))
        -- (and the ThenWrite's columns, replacing this line)
    FROM call_event
    LEFT JOIN moved_wallet ON true
    LEFT JOIN debit_row ON true
    LEFT JOIN burned_lots ON true
"""  # noqa: S608 - every name is one of our tables
_THEN_CTES = "-- 8. A caller's own rows, when it gave a ThenWrite (its CTEs replace this line).\n"
_THEN_COLUMNS = "-- (and the ThenWrite's columns, replacing this line)\n"


@dataclass(frozen=True)
class ThenWrite:
    """Another app's rows written by the charge's own statement, so that a caller who writes its rows
    right after a charge saves that statement's round trip (a turn's messages: sessions_app.turn_rows);
    they commit with the charge, in the caller's transaction or (none open) in the statement's own.

    `ctes`: more common table expressions (each starting with a comma), run after the rollups; they
    may read the charge's `call_event` (the new event's id) and must read `moved_wallet` before they
    lock a row of their own, so every charge locks the wallet first. `columns`: more result columns
    (each starting with a comma, a scalar subquery each), given back as ChargeResult.then_row.
    `params`: their parameters, named apart from the charge's. The text is the caller's and fixed
    (each text is prepared once per connection); the values are bound.
    """

    ctes: str
    columns: str
    params: dict


@dataclass(frozen=True)
class ChargeResult:
    event: LLMCallEvent
    balance_after: Decimal
    wallet_id: int
    transaction_id: int | None  # the debit row; None when the call cost nothing (a debit is never 0)
    reason: str
    then_row: tuple = ()  # ThenWrite.columns' values, when the charge was given one

    @cached_property
    def transaction(self) -> CreditTransaction | None:
        """The debit row as written (built on first use: the turn's hot path never reads it)."""
        if self.transaction_id is None:
            return None
        return loaded(
            CreditTransaction,
            id=self.transaction_id,
            wallet_id=self.wallet_id,
            kind=CreditTransaction.Kind.DEBIT,
            amount=-self.event.cost,
            balance_after=self.balance_after,
            reason=self.reason,
            initiated_by_id=None,
            llm_call_id=self.event.pk,
            idempotency_key=None,
            refund_of_id=None,
            created_at=self.event.created_at,
        )


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
    hold: CreditHold | None = None,
    purpose: str = LLMCallEvent.Purpose.CHAT,
    end_user: str = "",
    then: ThenWrite | None = None,
) -> ChargeResult:
    """Record a successful call at `price` and debit its cost, closing its hold; the balance may go negative.

    Atomic: inside the caller's transaction when there is one (an idempotent turn records its key in
    the same one), else its own: one statement that commits as it ends, made again in a
    transaction when its move crosses a line whose event is recorded then (step 9 of the
    statement). `purpose` says why the call was made (LLMCallEvent.Purpose).
    A call charged against its `hold` is never charged more than the hold (its worst case as
    reserved: what enforcement and the caps counted on), whatever the provider reports; the tokens
    are recorded as given and the debit's reason says it was capped. A call whose
    hold counts against an API key's limit is recorded with that key (and `end_user`, the
    request's `user` field), and its cost counts against the key's limit and the wallet's caps.
    `then`: the caller's own rows written by the same statement (ThenWrite), committed with it.
    """
    cost = compute_cost(price=price, input_tokens=input_tokens, output_tokens=output_tokens)
    capped = hold is not None and cost > hold.amount
    if capped:
        cost = hold.amount
    event = _event(
        user_id=user.pk,
        model=price.model,
        provider=provider,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost,
        price=price,
        status=LLMCallEvent.Status.OK,
        error="",
        latency_ms=latency_ms,
        hold=hold,
        purpose=purpose,
        used_fallback=False,
        end_user=end_user[:256],
        created_at=occurred_at or timezone.now(),
    )
    reason = f"{price.model}: {input_tokens} in / {output_tokens} out tokens" + (
        f", cost capped at {cost}" if capped else ""
    )
    return _record(event, hold=hold, hold_status=CreditHold.Status.SETTLED, reason=reason, then=then)


def record_failed_call(
    *,
    user,
    model: str,
    provider: str,
    error: str,
    latency_ms: int = 0,
    price: ModelPrice | None = None,
    hold: CreditHold | None = None,
    purpose: str = LLMCallEvent.Purpose.CHAT,
    used_fallback: bool = False,
) -> LLMCallEvent:
    """Record a failed provider call (status error, zero cost, no ledger row) and release its hold.

    `used_fallback`: the caller answered with a deterministic stand-in instead (counted in the usage
    summary's `summary_fallbacks`).
    """
    event = _event(
        user_id=user.pk,
        model=model,
        provider=provider,
        input_tokens=0,
        output_tokens=0,
        cost=Decimal(0),
        price=price,
        status=LLMCallEvent.Status.ERROR,
        error=error[:500],
        latency_ms=latency_ms,
        hold=hold,
        purpose=purpose,
        used_fallback=used_fallback,
        end_user="",
        created_at=timezone.now(),
    )
    return _record(event, hold=hold, hold_status=CreditHold.Status.RELEASED, reason="").event


def _event(*, user_id: int, price: ModelPrice | None, hold: CreditHold | None, **fields) -> LLMCallEvent:
    """The call's event with its price snapshot (history is never re-priced), as it is about to be
    written: `_record` sets its id from the row it inserts."""
    return loaded(
        LLMCallEvent,
        id=None,
        user_id=user_id,
        input_price_per_1k=price.input_price_per_1k if price else Decimal(0),
        output_price_per_1k=price.output_price_per_1k if price else Decimal(0),
        shadow_refusal=bool(hold and hold.shadow_refusal),
        spend_limit_id=hold.spend_limit_id if hold else None,
        **fields,
    )


@lru_cache(maxsize=8)
def _record_sql(then_ctes: str, then_columns: str) -> str:
    """The charge with the caller's parts in their places (the two marker comments)."""
    assert _THEN_CTES in _RECORD_SQL and _THEN_COLUMNS in _RECORD_SQL, "the charge lost a ThenWrite marker"
    return _RECORD_SQL.replace(_THEN_CTES, then_ctes + "\n").replace(_THEN_COLUMNS, then_columns + "\n")


def _record(
    event: LLMCallEvent,
    *,
    hold: CreditHold | None,
    hold_status: str,
    reason: str,
    then: ThenWrite | None = None,
) -> ChargeResult:
    now = timezone.now()
    amount = -event.cost
    params = {
        "user_id": event.user_id,
        "model": event.model,
        "provider": event.provider,
        "input_tokens": event.input_tokens,
        "output_tokens": event.output_tokens,
        "cost": event.cost,
        "input_price": event.input_price_per_1k,
        "output_price": event.output_price_per_1k,
        "status": event.status,
        "error": event.error,
        "latency_ms": event.latency_ms,
        "shadow": event.shadow_refusal,
        "purpose": event.purpose,
        "used_fallback": event.used_fallback,
        "spend_limit_id": event.spend_limit_id,
        "end_user": event.end_user,
        "occurred_at": event.created_at,
        "now": now,
        "hold_id": hold.pk if hold else None,
        "hold_status": hold_status,
        "amount": amount,
        "reason": reason,
        "low_balance": low_balance_threshold(),
        "alert_percents": list(CAP_ALERT_PERCENTS),
        **rollup.call_params(event),
        # The call's periods: it counts against its limits in the period it was made in, the one its
        # usage is filed under (a late charge of a stream's hold may come after midnight).
        **period_params(event.created_at),
    }
    sql = _RECORD_SQL
    if then is not None:
        if clash := params.keys() & then.params.keys():
            raise ValueError(
                f"A ThenWrite's parameters are named like the charge's: {', '.join(sorted(clash))}."
            )
        sql = _record_sql(then.ctes, then.columns)
        params.update(then.params)
    row = None
    db = transaction.get_connection()
    if not db.in_atomic_block and db.get_autocommit():
        # Its own transaction: PostgreSQL commits the one statement as it ends, so the charge costs
        # one round trip, not three (BEGIN, the statement, COMMIT). The statement refuses to commit
        # when its move crosses a line (step 9); then the charge is made in a transaction below.
        try:
            (row,) = execute_prepared(sql, {**params, "alone": True})
        except DatabaseError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != CROSSES_A_LINE:
                raise
    if row is None:
        # No savepoint: inside a caller's transaction a failure rolls back the caller's whole unit
        # of work (a turn), and the hot path saves a SAVEPOINT round trip pair.
        with transaction.atomic(savepoint=False):
            (row,) = execute_prepared(sql, {**params, "alone": False})
            _record_crossings(row, event=event, amount=amount)
    event_id, wallet_id, balance_after, transaction_id, _caps, _alone, *then_row = row
    if hold is not None:
        hold.status, hold.closed_at, hold.llm_call_id = hold_status, now, event_id
    event.id = event_id
    return ChargeResult(
        event=event,
        balance_after=to_decimal(balance_after),
        wallet_id=wallet_id,
        transaction_id=transaction_id,
        reason=reason,
        then_row=tuple(then_row),
    )


def _record_crossings(row: tuple, *, event: LLMCallEvent, amount: Decimal) -> None:
    """The lines the charge's move crossed (a balance line, a cap's alert percent), each recorded once:
    in the charge's transaction, still under the wallet's row lock, after its statement `row`."""
    _event_id, wallet_id, balance_after, _transaction_id, caps, *_ = row
    if wallet_id is None:  # users loaded raw, without open_wallet: nothing is kept
        raise Wallet.DoesNotExist(f"User {event.user_id} has no wallet.")
    balance_after = to_decimal(balance_after)
    record_crossings(
        wallet_id=wallet_id,
        user_id=event.user_id,
        balance_before=balance_after - amount,
        balance_after=balance_after,
    )
    record_cap_alerts(wallet_id=wallet_id, user_id=event.user_id, caps=caps, balance=balance_after)
