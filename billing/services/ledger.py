"""Ledger rows written by people and by sign-up: wallets opened, grants, enforcement overrides."""

import logging
import string
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.exceptions import (
    BillingError,
    IdempotencyConflict,
    InitiatorNotStaff,
    InvalidAmount,
    InvalidGrant,
)
from billing.models import CreditTransaction, LLMCallEvent, Wallet
from billing.money import AmountError, parse_amount, quantize
from billing.services._wallet import move

logger = logging.getLogger(__name__)

GRANT_MAX = Decimal("10000")
REASON_MAX = 500
IDEMPOTENCY_KEY_MAX = 255
_PRINTABLE_ASCII = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")
STARTING_CREDITS_REASON = "Starting credits"


def append(
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
    """Move the wallet and append its ledger row with that statement's balance; the caller holds the transaction."""
    moved = move(user_id=user_id, amount=amount)
    return CreditTransaction.objects.create(
        wallet_id=moved.wallet_id,
        kind=kind,
        amount=amount,
        balance_after=moved.balance_after,
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
            row = append(
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
            row = append(
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
