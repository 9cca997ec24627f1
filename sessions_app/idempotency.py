"""Idempotent turns: an Idempotency-Key claimed in the database before the model call, completed with the debit.

The database decides, never a read-then-write: the claim is one `INSERT ... ON CONFLICT DO NOTHING`
on the unique (user, key), committed before the model is called. A duplicate that loses finds the
winner's row: same content and done, its stored 201 body is replayed (no model call, no charge);
same content and still in progress, 409 `request_in_progress`; other content, 409
`idempotency_conflict`. Completion is written inside the turn's own transaction, with its debit and
rows (`take_turn(before_commit=...)`), so a key is done if and only if its turn was charged. A first
attempt that fails in any way deletes its row, so the key stays unused.

A request that dies mid-flight (worker killed) leaves its row in progress. Such a row is treated as
abandoned once it is older than CREDIT_HOLD_TTL_SECONDS: by then the attempt's credit hold has
expired, so no money is pending on it, and a retry takes the row over (a conditional UPDATE that
changes `attempt`). Should the stale attempt still finish after all, its completion matches no row
and its whole turn is rolled back (nothing charged, no messages): only one attempt ever completes.
"""

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from billing.exceptions import IdempotencyConflict
from core.validators import validate_idempotency_key
from sessions_app.models import TurnRequest

logger = logging.getLogger(__name__)

KEEP_HOURS = 24  # keys are kept at least this long (API.md)
_TABLE = TurnRequest._meta.db_table
# The claim: the database settles a race between two attempts on the unique (user, key).
_CLAIM_SQL = f"""
-- A new claim, in progress, for this attempt; a key already claimed returns no row.
INSERT INTO {_TABLE} (user_id, key, content_hash, attempt, state, created_at)
VALUES (%s, %s, %s, %s, 'in_progress', %s)
    ON CONFLICT (user_id, key) DO NOTHING
RETURNING id
"""  # noqa: S608 - our table, the values all bound


class RequestInProgress(IdempotencyConflict):
    """The first request with this key is still running (or was taken over by a retry)."""

    code = "request_in_progress"


@dataclass(frozen=True)
class Claim:
    id: int
    attempt: uuid.UUID


def content_hash(*, session_id: int, content: str) -> str:
    """What a replay must match: the session and the content (sha256, hex)."""
    return hashlib.sha256(f"{session_id}\x00{content}".encode()).hexdigest()


def claim(*, user, key: str, session_id: int, content: str) -> Claim | dict:
    """Claim `key` for this turn (committed at once), or return the first attempt's 201 body to replay.

    Raises IdempotencyConflict (409) for other content under the key, RequestInProgress (409) while
    the first attempt runs, and core's InvalidInput (400 on `idempotency_key`) for a malformed key.
    """
    key = validate_idempotency_key(key)
    digest = content_hash(session_id=session_id, content=content)
    for _ in range(3):  # a first attempt may fail (and free the key) between our insert and read
        now, attempt = timezone.now(), uuid.uuid4()
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM_SQL, [user.pk, key, digest, attempt, now])
            row = cursor.fetchone()
        if row is not None:
            return Claim(id=row[0], attempt=attempt)
        first = (
            TurnRequest.objects.filter(user=user, key=key)
            .values("id", "content_hash", "state", "attempt", "created_at", "response")
            .first()
        )
        if first is None:
            continue
        if first["content_hash"] != digest:
            raise IdempotencyConflict(
                "This Idempotency-Key was already used for a turn with other content or in another "
                "session; send a new key for a new turn."
            )
        if first["state"] == TurnRequest.State.DONE:
            return first["response"]
        if first["created_at"] <= now - timedelta(seconds=settings.CREDIT_HOLD_TTL_SECONDS):
            taken = TurnRequest.objects.filter(
                pk=first["id"], state=TurnRequest.State.IN_PROGRESS, attempt=first["attempt"]
            ).update(attempt=attempt, created_at=now)
            if taken:
                logger.warning(
                    "abandoned turn request taken over",
                    extra={"user_id": user.pk, "turn_request_id": first["id"]},
                )
                return Claim(id=first["id"], attempt=attempt)
            continue
        break
    raise RequestInProgress(
        "A turn with this Idempotency-Key is still being answered; retry in a moment to get its result."
    )


def complete(*, claimed: Claim, turn_id: int, response: dict) -> None:
    """Mark the claim done with its 201 body; call it inside the turn's transaction (with the debit).

    Raises RequestInProgress when the claim was taken over meanwhile (see the module docstring),
    which rolls the whole turn back.
    """
    done = TurnRequest.objects.filter(
        pk=claimed.id, attempt=claimed.attempt, state=TurnRequest.State.IN_PROGRESS
    ).update(state=TurnRequest.State.DONE, turn_id=turn_id, response=response, completed_at=timezone.now())
    if not done:
        raise RequestInProgress(
            "This turn took so long that a retry with the same Idempotency-Key took it over; this attempt's "
            "answer was not charged (tool steps it had finished stay charged, as for any turn that fails)."
        )


def release(*, claimed: Claim) -> None:
    """Free the key after a failed attempt (402, 502, 504, any error), so a retry starts afresh."""
    TurnRequest.objects.filter(
        pk=claimed.id, attempt=claimed.attempt, state=TurnRequest.State.IN_PROGRESS
    ).delete()


def run_once(
    *, user, key: str, session_id: int, content: str, take: Callable[[Callable[[dict, int], None]], dict]
) -> tuple[dict, bool]:
    """Take a turn at most once per key: (201 body, replayed). `take(record)` runs the turn and must
    call `record(body, turn_id)` inside the turn's transaction."""
    claimed = claim(user=user, key=key, session_id=session_id, content=content)
    if not isinstance(claimed, Claim):
        return claimed, True
    try:
        body = take(lambda body, turn_id: complete(claimed=claimed, turn_id=turn_id, response=body))
    except BaseException:
        release(claimed=claimed)
        raise
    return body, False


def prune(*, older_than_hours: int = KEEP_HOURS) -> int:
    """Delete keys older than `older_than_hours` (at least 24): done ones, and abandoned in-progress ones."""
    if older_than_hours < KEEP_HOURS:
        raise ValueError(f"Idempotency keys are kept at least {KEEP_HOURS} hours.")
    now = timezone.now()
    try:
        cutoff = now - timedelta(hours=older_than_hours)
    except (OverflowError, ValueError):  # past year 1: no key is that old
        raise ValueError(f"{older_than_hours} hours ago is before any date; ask for fewer hours.") from None
    abandoned = now - timedelta(seconds=settings.CREDIT_HOLD_TTL_SECONDS)
    old = TurnRequest.objects.filter(created_at__lt=cutoff)
    deleted, _ = (
        old.filter(state=TurnRequest.State.DONE)
        | old.filter(state=TurnRequest.State.IN_PROGRESS, created_at__lt=abandoned)
    ).delete()
    return deleted
