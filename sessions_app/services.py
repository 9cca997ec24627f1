"""Writes of chat sessions and the turn flow: call the provider outside any transaction, then charge."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import services as billing_services
from billing.exceptions import InsufficientCredits, PriceNotFound
from billing.models import LLMCallEvent, ModelPrice
from billing.selectors import active_model_names, active_price
from config.db import execute_prepared, loaded
from sessions_app.models import ChatSession, Message, Turn
from sessions_app.providers import ProviderError, estimate_prompt_tokens, get_provider
from sessions_app.selectors import TurnContext, turn_context

logger = logging.getLogger(__name__)

SESSION, MESSAGE, TURN = (m._meta.db_table for m in (ChatSession, Message, Turn))
# A turn's own rows in one statement: the next two message orders (the session row's UPDATE also
# serializes turns of one session), both messages, and the turn pointing at its metered call.
# No session row (deleted while the model was answering): no row back, nothing written.
_TURN_ROWS_SQL = (
    f"WITH s AS (UPDATE {SESSION} SET message_count = message_count + 2, updated_at = %(turn_at)s"  # noqa: S608
    " WHERE id = %(session_id)s RETURNING message_count"
    f'), m AS (INSERT INTO {MESSAGE} (session_id, role, content, "order", created_at)'
    " SELECT %(session_id)s, v.role, v.content, s.message_count - v.back, %(turn_at)s FROM s,"
    " (VALUES ('user', %(prompt)s::text, 2), ('assistant', %(reply)s::text, 1)) AS v (role, content, back)"
    " RETURNING id, role"
    f"), t AS (INSERT INTO {TURN} (session_id, user_message_id, assistant_message_id, llm_call_id, created_at)"
    " SELECT %(session_id)s, (SELECT id FROM m WHERE role = 'user'),"
    " (SELECT id FROM m WHERE role = 'assistant'), %(llm_call_id)s, %(turn_at)s FROM s RETURNING id)"
    " SELECT s.message_count, (SELECT id FROM t), (SELECT id FROM m WHERE role = 'user'),"
    " (SELECT id FROM m WHERE role = 'assistant') FROM s"
)


class SessionGone(Exception):
    """The session was deleted while its reply was being generated (the call is still metered)."""


@dataclass(frozen=True)
class TurnResult:
    turn: Turn
    balance_after: Decimal


def _refuse_unpriced(model: str, *, field: str | None = "model") -> PriceNotFound:
    choices = ", ".join(active_model_names()) or "none is priced yet; ask an operator"
    return PriceNotFound(
        f"The model {model!r} has no active price, so it cannot be used. Choose one of: {choices}.",
        field=field,
    )


def _price_or_refuse(model: str) -> ModelPrice:
    price = active_price(model=model)
    if price is None:
        raise _refuse_unpriced(model)
    return price


def validate_model(model: str) -> str:
    """A model is usable when it has an active price; raise PriceNotFound (400 on `model`) if not."""
    _price_or_refuse(model)
    return model


def create_session(*, owner, title: str = "", model: str | None = None) -> ChatSession:
    """Open a chat session on a priced model (LLM_DEFAULT_MODEL unless given)."""
    model = validate_model(model or settings.LLM_DEFAULT_MODEL)
    now = timezone.now()
    return ChatSession.objects.create(owner=owner, title=title, model=model, created_at=now, updated_at=now)


def update_session(
    *, session: ChatSession, title: str | None = None, model: str | None = None
) -> ChatSession:
    """Rename a session or move it to another priced model."""
    fields = []
    if title is not None:
        session.title = title
        fields.append("title")
    if model is not None:
        session.model = validate_model(model)
        fields.append("model")
    if fields:
        session.save(update_fields=fields)
    return session


def delete_session(*, session: ChatSession) -> None:
    """Remove a session with its messages and turns; its LLM call events and ledger rows stay."""
    session.delete()


@dataclass
class PreparedTurn:
    """A turn between its reservation and its settlement (prepare_turn, then one of the settle_* steps)."""

    session: ChatSession
    user: object
    content: str
    price: ModelPrice
    prompt: list
    provider: object
    hold: object  # billing.models.CreditHold, open until settled, failed or released
    started: float = 0.0

    @property
    def prompt_tokens(self) -> int:
        return estimate_prompt_tokens(self.prompt)


def prepare_turn(
    *, session: ChatSession, user, content: str, context: TurnContext | None = None
) -> PreparedTurn:
    """Read what the turn needs and reserve its worst-case cost; raises InsufficientCredits when refused.

    `context` is what the view read with the session (selectors.turn_context); without it, it is
    read here. Nothing else is written: a caller that does not go on must release(hold).
    """
    if context is None:
        context = turn_context(user=user, session_id=session.pk)
        if context is None:
            raise SessionGone(session.pk)
    price, history = context.price, context.history
    if price is None:
        # A price withdrawn since the session was opened: refuse before any call (PATCH the model).
        raise _refuse_unpriced(session.model, field=None)
    prompt = [*history, {"role": Message.Role.USER.value, "content": content}]
    provider = get_provider()
    # Reserve the worst case before the call: the prompt by the counting rule plus the output cap.
    # Under enforcement this one conditional UPDATE is the gate, so a burst of turns cannot overdraw.
    estimate = billing_services.compute_cost(
        price=price,
        input_tokens=estimate_prompt_tokens(prompt),
        output_tokens=settings.LLM_MAX_OUTPUT_TOKENS,
    )
    reservation = billing_services.reserve(user=user, amount=estimate)
    if reservation.refused:
        raise InsufficientCredits(balance=reservation.balance, available=reservation.available)
    return PreparedTurn(
        session=session,
        user=user,
        content=content,
        price=price,
        prompt=prompt,
        provider=provider,
        hold=reservation.hold,
        started=time.monotonic(),
    )


def take_turn(
    *,
    session: ChatSession,
    user,
    content: str,
    context: TurnContext | None = None,
    before_commit: Callable[[TurnResult], None] | None = None,
) -> TurnResult:
    """Answer `content` in `session` and charge for it; on provider failure record the call, debit nothing.

    The provider is called with no transaction open and no lock held. Then one transaction writes
    billing's part (the call event, the debit, the hold settled: billing.services.charge) and the
    turn's own rows (both messages and the turn), or none of them. A failed call keeps no messages
    (the user can simply resend); only its LLMCallEvent (status error, cost 0) is kept. `context` is
    what the view read with the session (selectors.turn_context); without it, it is read here.
    The streamed turn (sessions_app.streaming) runs the same steps around the provider's stream.
    `before_commit(result)` runs inside that transaction once the turn is written (an idempotent
    turn records its key as done there); if it raises, nothing of the turn is kept.
    """
    turn = prepare_turn(session=session, user=user, content=content, context=context)
    try:
        completion = turn.provider.complete(
            model=session.model, messages=turn.prompt, max_output_tokens=settings.LLM_MAX_OUTPUT_TOKENS
        )
    except ProviderError as exc:
        fail_turn(turn, exc)
        raise
    except BaseException:
        # Anything unexpected (a bug, a worker shutdown): give the hold back rather than wait for expiry.
        billing_services.release(hold=turn.hold)
        raise
    return settle_turn(
        turn,
        reply=completion.text,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        before_commit=before_commit,
    )


def fail_turn(turn: PreparedTurn, exc: ProviderError) -> LLMCallEvent:
    """Record the failed call (status error, cost 0) and release the turn's hold; no messages are kept."""
    latency_ms = _elapsed_ms(turn.started)
    event = billing_services.record_failed_call(
        user=turn.user,
        model=turn.session.model,
        provider=turn.provider.name,
        error=f"{type(exc).__name__}: {exc.reason}",
        latency_ms=latency_ms,
        price=turn.price,
        hold=turn.hold,
    )
    logger.warning(
        "llm provider failed",
        extra={
            "user_id": turn.user.pk,
            "session_id": turn.session.pk,
            "provider": turn.provider.name,
            "model": turn.session.model,
            "error": exc.reason,
            "latency_ms": latency_ms,
            "llm_call_id": event.pk,
        },
    )
    return event


def settle_turn(
    turn: PreparedTurn,
    *,
    reply: str,
    input_tokens: int,
    output_tokens: int,
    before_commit: Callable[[TurnResult], None] | None = None,
) -> TurnResult:
    """Charge the call (its hold settled) and write the turn's rows, in one transaction (see take_turn)."""
    latency_ms = _elapsed_ms(turn.started)
    session, user = turn.session, turn.user
    now = timezone.now()
    with transaction.atomic():
        charged = billing_services.charge(
            user=user,
            price=turn.price,
            provider=turn.provider.name,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=latency_ms,
            occurred_at=now,
            hold=turn.hold,
        )
        row = _write_turn_rows(
            session=session, prompt=turn.content, reply=reply, event=charged.event, now=now
        )
        if row is not None and before_commit is not None:
            before_commit(TurnResult(turn=row, balance_after=charged.balance_after))
    if row is None:
        # Deleted from another tab mid-call: the provider did the work, so the call stays metered
        # and charged like any other; there is just no session left to keep the messages in.
        logger.warning(
            "session deleted during its turn",
            extra={"user_id": user.pk, "session_id": session.pk, "llm_call_id": charged.event.pk},
        )
        raise SessionGone(session.pk)
    logger.info(
        "turn charged",
        extra={
            "user_id": user.pk,
            "session_id": session.pk,
            "turn_id": row.pk,
            "llm_call_id": charged.event.pk,
            "cost": str(charged.event.cost),
            "balance_after": str(charged.balance_after),
        },
    )
    return TurnResult(turn=row, balance_after=charged.balance_after)


def settle_abandoned_turn(
    turn: PreparedTurn, *, input_tokens: int, output_tokens: int, why: str
) -> LLMCallEvent:
    """Charge a call whose reply was not delivered whole (a streamed turn the client left); no turn rows.

    The tokens are the provider's report when it came, else the counting rule over what it produced;
    either way the cost is capped at the hold (the worst case reserved before the call).
    """
    output_tokens = min(output_tokens, settings.LLM_MAX_OUTPUT_TOKENS)
    charged = billing_services.charge(
        user=turn.user,
        price=turn.price,
        provider=turn.provider.name,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_ms=_elapsed_ms(turn.started),
        hold=turn.hold,
    )
    logger.warning(
        "streamed turn abandoned",
        extra={
            "user_id": turn.user.pk,
            "session_id": turn.session.pk,
            "llm_call_id": charged.event.pk,
            "reason": why,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost": str(charged.event.cost),
        },
    )
    return charged.event


def _write_turn_rows(
    *, session: ChatSession, prompt: str, reply: str, event: LLMCallEvent, now
) -> Turn | None:
    """Write the turn's messages and turn row (None if the session is gone); the caller holds the transaction."""
    rows = execute_prepared(
        _TURN_ROWS_SQL,
        {"session_id": session.pk, "turn_at": now, "prompt": prompt, "reply": reply, "llm_call_id": event.pk},
    )
    if not rows:
        return None
    ((count, turn_id, user_message_id, assistant_message_id),) = rows
    session.message_count, session.updated_at = count, now

    def message(*, id: int, role: str, content: str, order: int) -> Message:
        return loaded(
            Message, id=id, session_id=session.pk, role=role, content=content, order=order, created_at=now
        )

    turn = loaded(
        Turn,
        id=turn_id,
        session_id=session.pk,
        user_message_id=user_message_id,
        assistant_message_id=assistant_message_id,
        llm_call_id=event.pk,
        created_at=now,
    )
    # The related rows are known: set them, so serializing the turn reads nothing back.
    turn.session, turn.llm_call = session, event
    turn.user_message = message(id=user_message_id, role=Message.Role.USER, content=prompt, order=count - 2)
    turn.assistant_message = message(
        id=assistant_message_id, role=Message.Role.ASSISTANT, content=reply, order=count - 1
    )
    return turn


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.monotonic() - started) * 1000))
