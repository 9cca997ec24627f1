"""Every write that moves credits: each in one transaction, the wallet moved by one UPDATE ... RETURNING."""

import logging
import string
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing.exceptions import IdempotencyConflict, InitiatorNotStaff, InvalidAmount, InvalidGrant
from billing.models import CreditTransaction, LLMCallEvent, ModelPrice, Wallet
from billing.money import AmountError, parse_amount, quantize, to_decimal

logger = logging.getLogger(__name__)

GRANT_MAX = Decimal("10000")
REASON_MAX = 500
IDEMPOTENCY_KEY_MAX = 255
_PRINTABLE_ASCII = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")
STARTING_CREDITS_REASON = "Starting credits"

_MOVE_SQL = (
    f"UPDATE {Wallet._meta.db_table} SET balance = balance + %s, updated_at = %s "  # noqa: S608 - table name is ours
    "WHERE user_id = %s RETURNING id, balance"
)


@dataclass(frozen=True)
class ChargeResult:
    event: LLMCallEvent
    transaction: CreditTransaction | None  # None when the call cost nothing (a debit is never 0)
    balance_after: Decimal


def _move(*, user_id: int, amount: Decimal) -> tuple[int, Decimal]:
    """Add `amount` to the user's wallet in one locking statement; return (wallet id, new balance)."""
    with connection.cursor() as cursor:
        cursor.execute(_MOVE_SQL, [amount, timezone.now(), user_id])
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
) -> CreditTransaction:
    """Move the wallet and append its ledger row; the caller holds the transaction."""
    wallet_id, balance_after = _move(user_id=user_id, amount=amount)
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
    cost = compute_cost(price=price, input_tokens=input_tokens, output_tokens=output_tokens)
    occurred_at = occurred_at or timezone.now()
    with transaction.atomic():
        event = LLMCallEvent.objects.create(
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
            created_at=occurred_at,
        )
        if cost == 0:
            balance = to_decimal(Wallet.objects.values_list("balance", flat=True).get(user=user))
            return ChargeResult(event=event, transaction=None, balance_after=balance)
        row = _append(
            user_id=user.pk,
            kind=CreditTransaction.Kind.DEBIT,
            amount=-cost,
            reason=f"{price.model}: {input_tokens} in / {output_tokens} out tokens",
            llm_call=event,
            created_at=occurred_at,
        )
    return ChargeResult(event=event, transaction=row, balance_after=row.balance_after)


def record_failed_call(
    *,
    user,
    model: str,
    provider: str,
    error: str,
    latency_ms: int = 0,
    price: ModelPrice | None = None,
) -> LLMCallEvent:
    """Record a failed provider call: status error, zero cost, no ledger row."""
    return LLMCallEvent.objects.create(
        user=user,
        model=model,
        provider=provider,
        cost=0,
        input_price_per_1k=price.input_price_per_1k if price else 0,
        output_price_per_1k=price.output_price_per_1k if price else 0,
        status=LLMCallEvent.Status.ERROR,
        error=error[:500],
        latency_ms=latency_ms,
    )
