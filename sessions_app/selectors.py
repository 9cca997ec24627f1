"""Reads of chat sessions and turns for views and the turn flow (no writes here)."""

from dataclasses import dataclass

from django.db import connection
from django.db.models import QuerySet

from billing.models import ModelPrice, Wallet
from billing.money import to_decimal
from billing.selectors import EnforcementState
from sessions_app.models import ChatSession, Message, Turn
from sessions_app.providers import ChatMessage

# The prompt's context: at most this many recent messages, and at most this many characters of
# them (oldest dropped first), so a long chat never sends an unbounded prompt.
HISTORY_MAX_MESSAGES = 20
HISTORY_MAX_CHARS = 64_000


def sessions_for_user(*, user) -> QuerySet[ChatSession]:
    """The user's own sessions, most recently active first; another user's are simply absent."""
    return ChatSession.objects.filter(owner=user).order_by("-updated_at", "-id")


@dataclass(frozen=True)
class TurnContext:
    """Everything a turn reads before it calls the model, read together (see turn_context)."""

    session: ChatSession
    price: ModelPrice | None  # None: the session's model has no active price
    enforcement: EnforcementState | None  # None only if the owner has no wallet
    history: list[ChatMessage]


_SESSION_COLUMNS = ("id", "owner_id", "title", "model", "message_count")
# The turn's reads in one round trip: the caller's session (absent: not theirs, or no such session),
# its model's active price, the owner's wallet as the enforcement pre-check reads it, and the
# session's latest messages, newest first (one result row per message; one row when it has none).
# Plain SQL on both databases: this is the hot path, and compiling the ORM's version of it cost
# more than running it.
_TURN_CONTEXT_SQL = (
    "SELECT s.id, s.owner_id, s.title, s.model, s.message_count,"  # noqa: S608 - our tables only
    " p.id, p.input_price_per_1k, p.output_price_per_1k, w.balance, w.held, w.enforcement, m.role, m.content"
    f" FROM {ChatSession._meta.db_table} s"
    f" LEFT JOIN {ModelPrice._meta.db_table} p ON p.model = s.model AND p.active"
    f" LEFT JOIN {Wallet._meta.db_table} w ON w.user_id = s.owner_id"
    " LEFT JOIN (SELECT role, content, ord FROM ("
    f'  SELECT role, content, "order" AS ord FROM {Message._meta.db_table}'
    f'  WHERE session_id = %s ORDER BY "order" DESC LIMIT {HISTORY_MAX_MESSAGES}) AS recent'
    " ) AS m ON 1 = 1"
    " WHERE s.id = %s AND s.owner_id = %s"
    " ORDER BY m.ord DESC"
)


def turn_context(*, user, session_id: int) -> TurnContext | None:
    """The session (if it is the user's), its price, the wallet's enforcement state and the history."""
    with connection.cursor() as cursor:
        cursor.execute(_TURN_CONTEXT_SQL, [session_id, session_id, user.pk])
        rows = cursor.fetchall()
    if not rows:
        return None
    first = rows[0]
    session = ChatSession.from_db(connection.alias, _SESSION_COLUMNS, first[:5])
    price_id, price_in, price_out, balance, held, enforcement = first[5:11]
    price = None
    if price_id is not None:
        price = ModelPrice(
            id=price_id,
            model=session.model,
            input_price_per_1k=to_decimal(price_in),
            output_price_per_1k=to_decimal(price_out),
            active=True,
        )
    state = None
    if balance is not None:
        state = EnforcementState(balance=to_decimal(balance), held=to_decimal(held), enforcement=enforcement)
    newest_first = [(role, content) for *_, role, content in rows if role is not None]
    return TurnContext(session=session, price=price, enforcement=state, history=_bounded(newest_first))


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
    return _bounded(rows)


def _bounded(rows: list[tuple[str, str]]) -> list[ChatMessage]:
    """(role, content) newest first, as the prompt's history: oldest first, within HISTORY_MAX_CHARS."""
    history: list[ChatMessage] = []
    budget = HISTORY_MAX_CHARS
    for role, content in rows:  # newest first: keep the most recent that fit
        budget -= len(content)
        if budget < 0:
            break
        history.append({"role": role, "content": content})
    history.reverse()
    return history
