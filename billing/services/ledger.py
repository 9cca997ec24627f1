"""Ledger rows written by people and by sign-up: wallets opened, grants, refunds, adjustments, enforcement."""

import logging
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.exceptions import (
    BillingError,
    GrantLimitExceeded,
    IdempotencyConflict,
    InitiatorNotStaff,
    InvalidAmount,
    InvalidGrant,
    InvalidRefund,
)
from billing.models import CreditLot, CreditTransaction, LLMCallEvent, Wallet
from billing.services import lots
from billing.services._wallet import move
from core.money import AmountError, format_money, parse_amount, quantize
from core.validators import validate_idempotency_key

logger = logging.getLogger(__name__)

GRANT_MAX = Decimal("10000")
# Staff with this permission (superusers implicitly; no group by default) grant past SUPPORT_GRANT_LIMIT.
GRANT_BEYOND_LIMIT_PERMISSION = "billing.grant_beyond_support_limit"
REASON_MAX = 500
STARTING_CREDITS_REASON = "Starting credits"
_LOGGED = {"grant": "credits granted", "refund": "credits refunded", "adjustment": "wallet adjusted"}


def append(
    *,
    user_id: int,
    kind: str,
    amount: Decimal,
    reason: str = "",
    initiated_by=None,
    llm_call: LLMCallEvent | None = None,
    idempotency_key: str | None = None,
    refund_of: CreditTransaction | None = None,
    created_at: datetime | None = None,
    category: str | None = None,
    priority: int | None = None,
    expires_at: datetime | None = None,
    expired_lot: CreditLot | None = None,
) -> CreditTransaction:
    """Move the wallet and append its ledger row with that statement's balance; the caller holds the transaction.

    A credit (amount > 0) opens its lot, paying the wallet's debt first; the lot's terms default
    from `kind` (billing.services.lots.default_terms: a purchase is paid and never expires, a grant
    or an allowance promotional). A debit of any other kind burns the live lots in order; an expiry
    empties `expired_lot`. The move's UPDATE takes the wallet's row lock first, so every lot write
    here runs under it (billing.services.lots says why that matters).
    """
    with transaction.atomic(savepoint=False):
        moved = move(user_id=user_id, amount=amount)
        row = CreditTransaction.objects.create(
            wallet_id=moved.wallet_id,
            kind=kind,
            amount=amount,
            balance_after=moved.balance_after,
            reason=reason,
            initiated_by=initiated_by,
            llm_call=llm_call,
            idempotency_key=idempotency_key,
            refund_of=refund_of,
            created_at=created_at or timezone.now(),
        )
        if amount > 0:
            defaults = lots.default_terms(kind=kind)
            terms = lots.LotTerms(
                category=category or defaults.category,
                priority=defaults.priority if priority is None else priority,
                expires_at=expires_at,
            )
            lots.open_lot(wallet_id=moved.wallet_id, row=row, terms=terms)
        elif expired_lot is not None:
            lots.take_lot(lot=expired_lot, row=row)
        else:
            lots.burn(wallet_id=moved.wallet_id, row=row)
    return row


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


def _parse(raw) -> Decimal:
    try:
        return parse_amount(raw)
    except AmountError as exc:
        raise InvalidAmount(str(exc), field="amount") from exc


def validate_grant_amount(raw) -> Decimal:
    """A grant amount per API.md: exact decimal, at most 6 places, 0 < amount <= 10000."""
    amount = _parse(raw)
    if amount <= 0:
        raise InvalidAmount("Ensure this value is greater than 0.", field="amount")
    if amount > GRANT_MAX:
        raise InvalidAmount(f"Ensure this value is less than or equal to {GRANT_MAX}.", field="amount")
    return amount


def validate_adjustment_amount(raw) -> Decimal:
    """An adjustment: the grant's amount grammar, signed (a leading '-'), non-zero, abs <= 10000."""
    amount = _parse(raw)
    if amount == 0:
        raise InvalidAmount(
            "An adjustment cannot be 0: give a positive amount to add credits, a negative one to remove them.",
            field="amount",
        )
    if abs(amount) > GRANT_MAX:
        raise InvalidAmount(
            f"Ensure the absolute value is less than or equal to {GRANT_MAX}.", field="amount"
        )
    return amount


def validate_refund_amount(raw) -> Decimal:
    """A refund amount: the grant's grammar, > 0 (the debit's refundable rest bounds it, under lock)."""
    amount = _parse(raw)
    if amount <= 0:
        raise InvalidAmount("Ensure this value is greater than 0.", field="amount")
    return amount


def validate_reason(reason) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidGrant("A reason is required: say why these credits are granted.", field="reason")
    if len(reason) > REASON_MAX:
        raise InvalidGrant(f"Ensure the reason has no more than {REASON_MAX} characters.", field="reason")
    return reason.strip()


def check_grant_limit(*, amount, initiated_by) -> None:
    """Refuse giving more than SUPPORT_GRANT_LIMIT at once unless `initiated_by` may grant beyond it.

    Past GRANT_MAX, or an amount that does not parse, is left to the amount's own validator (its
    words apply to everyone); so is a missing or non-staff initiator (refused as such).
    """
    try:
        amount = parse_amount(amount)
    except AmountError:
        return
    limit = quantize(Decimal(settings.SUPPORT_GRANT_LIMIT))
    if amount <= limit or amount > GRANT_MAX or initiated_by is None:
        return
    if not initiated_by.has_perm(GRANT_BEYOND_LIMIT_PERMISSION):
        raise GrantLimitExceeded(
            f"Ensure this value is at most {format_money(limit)}: that is the most you may grant at once "
            "(SUPPORT_GRANT_LIMIT). Ask a superuser, or staff with the permission "
            '"Can grant beyond the support limit", for more.',
            field="amount",
        )


def _require_staff(initiated_by, *, what: str) -> None:
    if initiated_by is None or not initiated_by.is_staff or not initiated_by.is_active:
        raise InitiatorNotStaff(f"Only an active staff user can {what}.")


def _replay(
    *,
    user_id: int,
    idempotency_key: str,
    kind: str,
    amount: Decimal | None,
    reason: str,
    refund_of_id: int | None = None,
) -> CreditTransaction | None:
    """The row written earlier with this key on this wallet (marked `replayed`), None if there is none.

    One key space per wallet, shared by grants, refunds and adjustments: the first row must match
    the kind, the amount (None: any, for a refund that asked for "what is left"), the reason and, for
    a refund, the debit; otherwise the reuse is a 409 IdempotencyConflict. A grant's lot terms are
    not matched (API.md: the body that must match is the amount and the reason): a retry that
    recomputes a relative expiry answers the first grant, whose lot keeps the terms it was given.
    """
    first = (
        CreditTransaction.objects.select_related("initiated_by")
        .filter(wallet__user_id=user_id, idempotency_key=idempotency_key)
        .first()
    )
    if first is None:
        return None
    if kind == CreditTransaction.Kind.REFUND:
        what, matches_target = "debit, amount or reason", first.refund_of_id == refund_of_id
    else:
        what, matches_target = "amount or reason", True
    if first.kind != kind:
        raise IdempotencyConflict(
            f"This idempotency key was already used for a {first.kind}; send a new key for a new {kind}."
        )
    if not matches_target or (amount is not None and first.amount != amount) or first.reason != reason:
        raise IdempotencyConflict(
            f"This idempotency key was already used for a {first.kind} with a different {what}; "
            f"send a new key for a new {kind}."
        )
    first.replayed = True
    return first


def _append_once(
    *,
    user_id: int,
    kind: str,
    amount: Decimal | None,
    reason: str,
    initiated_by,
    idempotency_key: str | None,
    refund_of: CreditTransaction | None = None,
    check=None,
    terms: lots.LotTerms | None = None,
) -> CreditTransaction:
    """Append a staff-initiated row at most once per idempotency key; `replayed` says which happened.

    With `check` (lock, check, append): the wallet row is locked first, then the key is looked up
    and `check()` returns the amount to append (it may refuse), then the row is appended, all in one
    transaction, so concurrent writers of one wallet decide one after the other. Without it, the
    append's own UPDATE ... RETURNING is the lock. Either way a race on one key is settled by the
    unique (wallet, idempotency_key) constraint, and the loser answers with the winner's row.
    """
    refund_of_id = refund_of.pk if refund_of is not None else None
    replay = {
        "user_id": user_id,
        "idempotency_key": idempotency_key,
        "kind": kind,
        "amount": amount,
        "reason": reason,
        "refund_of_id": refund_of_id,
    }
    if idempotency_key is not None and check is None:
        found = _replay(**replay)
        if found is not None:
            return found
    try:
        with transaction.atomic():
            if check is not None:
                Wallet.objects.select_for_update().filter(user_id=user_id).values_list("id").get()
                if idempotency_key is not None:
                    found = _replay(**replay)
                    if found is not None:
                        return found
                amount = check()
            row = append(
                user_id=user_id,
                kind=kind,
                amount=amount,
                reason=reason,
                initiated_by=initiated_by,
                idempotency_key=idempotency_key,
                refund_of=refund_of,
                **(_terms_kwargs(terms) if terms is not None else {}),
            )
    except IntegrityError:
        # Two requests raced on one key: the unique constraint let one through; answer with it.
        found = idempotency_key and _replay(**replay)
        if not found:
            raise
        return found
    row.replayed = False
    logger.info(
        _LOGGED[kind],
        extra={
            "user_id": user_id,
            "kind": kind,
            "amount": str(row.amount),
            "initiated_by": initiated_by.pk,
            "transaction_id": row.pk,
            "refund_of": refund_of_id,
        },
    )
    return row


def _terms_kwargs(terms: lots.LotTerms) -> dict:
    return {"category": terms.category, "priority": terms.priority, "expires_at": terms.expires_at}


def _staff_entry(
    *,
    user,
    amount,
    reason: str,
    initiated_by,
    idempotency_key: str | None,
    kind: str,
    validate_amount,
    what: str,
    validate_terms=None,
) -> CreditTransaction:
    """A staff-initiated row of `kind`: amount (by `validate_amount`), reason, terms, initiator and key checked, then appended once per key."""
    amount = validate_amount(amount)
    reason = validate_reason(reason)
    terms = validate_terms() if validate_terms is not None else None
    _require_staff(initiated_by, what=what)
    if idempotency_key is not None:
        idempotency_key = validate_idempotency_key(idempotency_key)
    check = None
    if terms is not None and terms.expires_at is not None and terms.expires_at <= timezone.now():
        # An expiry that has passed since the first request is still that request's: _append_once
        # answers a replay as any other, and refuses only the new grant that would be written.
        def check():
            raise lots.past_expiry()

    return _append_once(
        user_id=user.pk,
        kind=kind,
        amount=amount,
        reason=reason,
        initiated_by=initiated_by,
        idempotency_key=idempotency_key,
        terms=terms,
        check=check,
    )


def grant(
    *,
    user,
    amount,
    reason: str,
    initiated_by,
    idempotency_key: str | None = None,
    expires_at=None,
    priority=None,
    category=None,
) -> CreditTransaction:
    """Grant credits as one lot once per idempotency key; the returned row has `replayed` True on a replay.

    Lot terms (each optional, each refused on its own field): `expires_at` in the future (ISO 8601
    or a datetime; None: never), `priority` 0-100 (default 50, lower burns first), `category`
    paid or promotional (default promotional).
    """
    check_grant_limit(amount=amount, initiated_by=initiated_by)
    return _staff_entry(
        user=user,
        amount=amount,
        reason=reason,
        initiated_by=initiated_by,
        idempotency_key=idempotency_key,
        kind=CreditTransaction.Kind.GRANT,
        validate_amount=validate_grant_amount,
        what="grant credits",
        validate_terms=lambda: lots.validate_terms(
            expires_at=expires_at, priority=priority, category=category, past_ok=True
        ),
    )


def adjust(
    *, user, amount, reason: str, initiated_by, idempotency_key: str | None = None
) -> CreditTransaction:
    """Correct a wallet by a signed, non-zero amount (abs <= 10000) once per key; may leave it negative."""
    check_grant_limit(amount=amount, initiated_by=initiated_by)  # adding credits is granting them
    return _staff_entry(
        user=user,
        amount=amount,
        reason=reason,
        initiated_by=initiated_by,
        idempotency_key=idempotency_key,
        kind=CreditTransaction.Kind.ADJUSTMENT,
        validate_amount=validate_adjustment_amount,
        what="adjust a wallet",
    )


def refundable(*, debit: CreditTransaction) -> Decimal:
    """What is left to refund of a debit (its cost minus its refunds so far); read, not locked."""
    return refundable_of(debits=[debit])[debit.pk]


def refundable_of(*, debits: list[CreditTransaction]) -> dict[int, Decimal]:
    """What is left to refund of each debit, by id, in one query (a form listing thousands of them)."""
    refunded = dict(
        CreditTransaction.objects.filter(refund_of_id__in=[debit.pk for debit in debits])
        .values("refund_of_id")
        .annotate(total=Sum("amount"))
        .values_list("refund_of_id", "total")
    )
    return {debit.pk: quantize(-debit.amount - refunded.get(debit.pk, Decimal(0))) for debit in debits}


def refund(
    *,
    debit: CreditTransaction,
    amount: Decimal | None,
    reason: str,
    initiated_by,
    idempotency_key: str | None = None,
) -> CreditTransaction:
    """Give back all (amount None) or part of a debit as a new refund row; its refunds never exceed it.

    Lock, check, append: the wallet is locked before the debit's refunds are summed, so concurrent
    refunds of one debit are decided one after the other.
    """
    if debit.kind != CreditTransaction.Kind.DEBIT:
        raise InvalidRefund(
            f"Only a debit can be refunded; transaction {debit.pk} is {'an' if debit.kind[0] in 'aeiou' else 'a'} "
            f"{debit.kind}. "
            "To correct it, record an adjustment."
        )
    if amount is not None:
        amount = validate_refund_amount(amount)
    reason = validate_reason(reason)
    _require_staff(initiated_by, what="refund credits")
    if idempotency_key is not None:
        idempotency_key = validate_idempotency_key(idempotency_key)

    def check() -> Decimal:
        left = refundable(debit=debit)
        if left <= 0:
            raise InvalidRefund(f"Debit {debit.pk} is already fully refunded; nothing is left to refund.")
        if amount is not None and amount > left:
            raise InvalidAmount(
                f"Ensure this value is at most {format_money(left)}: that is what is left to refund "
                f"of debit {debit.pk}.",
                field="amount",
            )
        return left if amount is None else amount

    return _append_once(
        user_id=_owner_id(debit),
        kind=CreditTransaction.Kind.REFUND,
        amount=amount,
        reason=reason,
        initiated_by=initiated_by,
        idempotency_key=idempotency_key,
        refund_of=debit,
        check=check,
    )


def _owner_id(row: CreditTransaction) -> int:
    return Wallet.objects.values_list("user_id", flat=True).get(pk=row.wallet_id)


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
