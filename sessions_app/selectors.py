"""Reads of chat sessions and turns for views and the turn flow (no writes here)."""

from django.db.models import OuterRef, QuerySet, Subquery

from billing.models import ModelPrice
from billing.money import to_decimal
from sessions_app.models import ChatSession, Message, Turn
from sessions_app.providers import ChatMessage

# The prompt's context: at most this many recent messages, and at most this many characters of
# them (oldest dropped first), so a long chat never sends an unbounded prompt.
HISTORY_MAX_MESSAGES = 20
HISTORY_MAX_CHARS = 64_000


def sessions_for_user(*, user) -> QuerySet[ChatSession]:
    """The user's own sessions, most recently active first; another user's are simply absent."""
    return ChatSession.objects.filter(owner=user).order_by("-updated_at", "-id")


def sessions_with_price_for_user(*, user) -> QuerySet[ChatSession]:
    """The user's sessions, each read with its model's active price in the same query (the hot path)."""
    prices = ModelPrice.objects.filter(model=OuterRef("model"), active=True)
    return sessions_for_user(user=user).annotate(
        active_price_id=Subquery(prices.values("id")[:1]),
        active_price_in=Subquery(prices.values("input_price_per_1k")[:1]),
        active_price_out=Subquery(prices.values("output_price_per_1k")[:1]),
    )


def price_for_session(*, session: ChatSession) -> ModelPrice | None:
    """The active price of the session's model: from the session's annotations when it has them."""
    if not hasattr(session, "active_price_id"):
        return active_price(model=session.model)
    if session.active_price_id is None:
        return None
    return ModelPrice(
        id=session.active_price_id,
        model=session.model,
        input_price_per_1k=to_decimal(session.active_price_in),
        output_price_per_1k=to_decimal(session.active_price_out),
        active=True,
    )


def turns_for_session(*, session: ChatSession) -> QuerySet[Turn]:
    """A session's turns oldest first, with both messages and the call joined (no N+1)."""
    return (
        Turn.objects.filter(session=session)
        .select_related("user_message", "assistant_message", "llm_call")
        .order_by("id")
    )


def active_price(*, model: str) -> ModelPrice | None:
    """The active price of a model, or None when it has none (such a model cannot be used)."""
    return ModelPrice.objects.filter(model=model, active=True).first()


def active_model_names() -> list[str]:
    return list(ModelPrice.objects.filter(active=True).order_by("model").values_list("model", flat=True))


def recent_history(*, session: ChatSession) -> list[ChatMessage]:
    """The session's latest messages, oldest first, bounded by count and total characters."""
    rows = list(
        Message.objects.filter(session=session)
        .order_by("-order")
        .values_list("role", "content")[:HISTORY_MAX_MESSAGES]
    )
    history: list[ChatMessage] = []
    budget = HISTORY_MAX_CHARS
    for role, content in rows:  # newest first: keep the most recent that fit
        budget -= len(content)
        if budget < 0:
            break
        history.append({"role": role, "content": content})
    history.reverse()
    return history
