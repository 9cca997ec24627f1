"""Writes of chat sessions and the turn: a loop of model calls (turn_loop), each reserved, made outside any transaction, and charged."""

import logging
from collections.abc import Callable

from django.conf import settings
from django.utils import timezone

from billing.models import ModelPrice
from billing.selectors import active_price, known_price
from sessions_app.models import ChatSession
from sessions_app.providers import get_provider
from sessions_app.selectors import TurnContext, turn_context
from sessions_app.turn_loop import SessionGone, TurnLoop, TurnResult, refuse_unpriced

logger = logging.getLogger(__name__)


def _price_or_refuse(model: str) -> ModelPrice:
    price = active_price(model=model)
    if price is None:
        raise refuse_unpriced(model)
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


def prepare_turn(*, session: ChatSession, user, content: str, context: TurnContext | None = None) -> TurnLoop:
    """Read what the turn needs and reserve its first model call; raises InsufficientCredits when refused.

    `context` is what the view read with the session (selectors.turn_context); without it, it is
    read here. The reservation is the credit gate (402) and reads the model's active price, which
    the turn is charged at. Nothing else is written: a caller that does not go on must
    `release_open_call()`.
    """
    if context is None:
        context = turn_context(user=user, session_id=session.pk)
        if context is None:
            raise SessionGone(session.pk)
    price = known_price(model=session.model)
    if price is None:
        # A price withdrawn since the session was opened: refuse before any call (PATCH the model).
        raise refuse_unpriced(session.model, field=None)
    loop = TurnLoop(
        session=session, user=user, content=content, context=context, price=price, provider=get_provider()
    )
    loop.start()
    return loop


def take_turn(
    *,
    session: ChatSession,
    user,
    content: str,
    context: TurnContext | None = None,
    before_commit: Callable[[TurnResult], None] | None = None,
) -> TurnResult:
    """Answer `content` in `session` with a loop of model calls (tools when the model asks), and charge each.

    Every call is reserved before it is made, made with no transaction open and no lock held, and
    settled as its own LLMCallEvent (sessions_app.turn_loop); the answering call is settled in one
    transaction with the turn's own rows (messages, turn, its calls, its tool runs). A provider
    failure on the first call records the call, keeps no messages and debits nothing (the user can
    simply resend). The streamed turn (sessions_app.streaming) drives the same loop around the
    provider's stream. `before_commit(result)` runs inside that last transaction once the turn is
    written (an idempotent turn records its key as done there); if it raises, the turn's rows and
    its answering call's charge are not kept.
    """
    loop = prepare_turn(session=session, user=user, content=content, context=context)
    return loop.run(before_commit=before_commit)
