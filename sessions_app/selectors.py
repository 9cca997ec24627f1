"""Reads of chat sessions and turns for views and the turn flow (no writes here)."""

from dataclasses import dataclass

from django.db import connection
from django.db.models import QuerySet

from billing.models import ModelPrice
from billing.selectors import EnforcementState, spend_state
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
    """Everything a turn reads before it calls the model (see turn_context)."""

    session: ChatSession
    price: ModelPrice | None  # None: the session's model has no active price
    enforcement: EnforcementState | None  # None only if the owner has no wallet
    history: list[ChatMessage]


_SESSION_COLUMNS = ("id", "owner_id", "title", "model", "message_count", "created_at", "updated_at")
# The caller's session (absent: not theirs, or no such session) and its latest messages, newest
# first, in one round trip: one result row per message, one row when it has none.
_SESSION_AND_HISTORY_SQL = (
    "SELECT s.id, s.owner_id, s.title, s.model, s.message_count, s.created_at, s.updated_at,"  # noqa: S608
    " m.role, m.content"
    f" FROM {ChatSession._meta.db_table} s"
    " LEFT JOIN (SELECT role, content, ord FROM ("
    f'  SELECT role, content, "order" AS ord FROM {Message._meta.db_table}'
    f'  WHERE session_id = %(session_id)s ORDER BY "order" DESC LIMIT {HISTORY_MAX_MESSAGES}) AS recent'
    " ) AS m ON true"
    " WHERE s.id = %(session_id)s AND s.owner_id = %(user_id)s"
    " ORDER BY m.ord DESC"
)


def turn_context(*, user, session_id: int) -> TurnContext | None:
    """The session (None if it is not the user's), its history, and billing's price and wallet state."""
    with connection.cursor() as cursor:
        cursor.execute(_SESSION_AND_HISTORY_SQL, {"session_id": session_id, "user_id": user.pk})
        rows = cursor.fetchall()
    if not rows:
        return None
    session = ChatSession.from_db(connection.alias, _SESSION_COLUMNS, rows[0][: len(_SESSION_COLUMNS)])
    newest_first = [(role, content) for *_, role, content in rows if role is not None]
    spend = spend_state(user=user, model=session.model)
    return TurnContext(
        session=session, price=spend.price, enforcement=spend.enforcement, history=_bounded(newest_first)
    )


def turns_for_session(*, session: ChatSession) -> QuerySet[Turn]:
    """A session's turns oldest first, with both messages and the call joined (no N+1)."""
    return (
        Turn.objects.filter(session=session)
        .select_related("user_message", "assistant_message", "llm_call")
        .order_by("id")
    )


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
