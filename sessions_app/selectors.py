"""Reads of chat sessions and turns for views and the turn flow (no writes here)."""

from dataclasses import dataclass

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank, SearchVector
from django.db.models import F, Prefetch, QuerySet

from core.db import execute_prepared, loaded_row, selected
from sessions_app.models import (
    SEARCH_CONFIG,
    ChatSession,
    Message,
    SessionSummary,
    ToolCallEvent,
    Turn,
    TurnCall,
    UserFile,
)
from sessions_app.providers import ChatMessage

# The prompt's context: at most this many recent messages, and at most this many characters of
# them (oldest dropped first), so a long chat never sends an unbounded prompt.
HISTORY_MAX_MESSAGES = 20
HISTORY_MAX_CHARS = 64_000


def sessions_for_user(*, user) -> QuerySet[ChatSession]:
    """The user's own sessions, most recently active first; another user's are simply absent."""
    return ChatSession.objects.filter(owner=user).select_related("summary").order_by("-updated_at", "-id")


@dataclass(frozen=True)
class SummaryState:
    """The session's current summary, as the prompt and the next summary need it."""

    text: str
    covers_turns: int
    covers_messages: int  # messages with an order below this are in the summary


@dataclass(frozen=True)
class TurnContext:
    """Everything a turn reads before it calls the model (see turn_context)."""

    session: ChatSession
    # The prompt's history: the summary (a system message) when there is one, then the recent
    # messages it does not cover.
    history: list[ChatMessage]
    summary: SummaryState | None = None
    uncovered_chars: int = 0  # characters of all the messages the summary does not cover


# The caller's session (no row: not theirs, or no such session), its summary, the size of the history
# the summary does not cover (kept on the rows: nothing is summed here), and the latest uncovered
# messages, newest first, as two arrays: one row, prepared once per connection.
_SESSION_AND_HISTORY_SQL = (
    f"SELECT {selected(ChatSession, 's')}, sm.text, sm.covers_turns, coalesce(sm.covers_messages, 0),"  # noqa: S608 - our tables only
    " s.message_chars - coalesce(sm.covered_chars, 0), h.roles, h.contents"
    f" FROM {ChatSession._meta.db_table} s"
    f" LEFT JOIN {SessionSummary._meta.db_table} sm ON sm.id = s.summary_id"
    " CROSS JOIN LATERAL (SELECT array_agg(m.role ORDER BY m.ord DESC) AS roles,"
    " array_agg(m.content ORDER BY m.ord DESC) AS contents"
    f' FROM (SELECT role, content, "order" AS ord FROM {Message._meta.db_table}'
    '  WHERE session_id = s.id AND "order" >= coalesce(sm.covers_messages, 0)'
    f'  ORDER BY "order" DESC LIMIT {HISTORY_MAX_MESSAGES}) AS m) AS h'
    " WHERE s.id = %(session_id)s AND s.owner_id = %(user_id)s"
)


def summary_message(summary: SummaryState) -> ChatMessage:
    """The summary as it stands in a prompt for the turns it covers."""
    return {
        "role": "system",
        "content": f"Summary of the first {summary.covers_turns} turns of this conversation:\n{summary.text}",
    }


def turn_context(*, user, session_id: int) -> TurnContext | None:
    """The session (None if it is not the user's) and its history, in one round trip."""
    rows = execute_prepared(_SESSION_AND_HISTORY_SQL, {"session_id": session_id, "user_id": user.pk})
    if not rows:
        return None
    *session_row, summary_text, covers_turns, covers_messages, uncovered_chars, roles, contents = rows[0]
    session = loaded_row(ChatSession, session_row)
    summary = (
        SummaryState(text=summary_text, covers_turns=covers_turns, covers_messages=covers_messages)
        if summary_text is not None
        else None
    )
    history = _bounded(list(zip(roles or (), contents or (), strict=True)))
    if summary is not None:
        history.insert(0, summary_message(summary))
    return TurnContext(
        session=session,
        history=history,
        summary=summary,
        uncovered_chars=int(uncovered_chars),
    )


def turns_for_session(*, session: ChatSession) -> QuerySet[Turn]:
    """A session's turns oldest first, with both messages joined and their calls and tool runs prefetched.

    A page costs three queries whatever its size: the turns, their calls, their tool runs.
    """
    return (
        Turn.objects.filter(session=session)
        .select_related("session", "user_message", "assistant_message")
        .prefetch_related(
            Prefetch("calls", queryset=TurnCall.objects.select_related("llm_call").order_by("position")),
            Prefetch("tool_calls", queryset=ToolCallEvent.objects.order_by("position")),
        )
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


@dataclass(frozen=True)
class SearchHit:
    kind: str  # "file" or "message"
    id: int
    rank: float
    title: str  # the file's name, or the session's title
    snippet: str  # the matching words in context ("" for a file: read it with file_read)
    session_id: int | None = None
    role: str = ""


def search_own_content(*, user, query: str, limit: int) -> list[SearchHit]:
    """The user's own files and messages that match `query` (web search syntax), best first, at most `limit`.

    PostgreSQL full-text search on both (UserFile.search_vector; the messages' expression index),
    each asked for `limit` hits, merged by rank. Another user's rows are never read.
    """
    terms = SearchQuery(query, config=SEARCH_CONFIG, search_type="websearch")
    files = (
        UserFile.objects.filter(owner=user, search_vector=terms)
        .annotate(rank=SearchRank(F("search_vector"), terms))
        .order_by("-rank", "-id")
        .values_list("id", "name", "rank")[:limit]
    )
    vector = SearchVector("content", config=SEARCH_CONFIG)
    messages = (
        Message.objects.annotate(document=vector)
        .filter(session__owner=user, document=terms)
        .annotate(
            rank=SearchRank(vector, terms),
            snippet=SearchHeadline(
                "content",
                terms,
                config=SEARCH_CONFIG,
                start_sel="**",
                stop_sel="**",
                max_words=30,
                min_words=12,
            ),
        )
        .order_by("-rank", "-id")
        .values_list("id", "session_id", "session__title", "role", "rank", "snippet")[:limit]
    )
    hits = [SearchHit(kind="file", id=pk, rank=rank, title=name, snippet="") for pk, name, rank in files]
    hits += [
        SearchHit(
            kind="message", id=pk, rank=rank, title=title, snippet=snippet, session_id=session_id, role=role
        )
        for pk, session_id, title, role, rank, snippet in messages
    ]
    hits.sort(key=lambda hit: hit.rank, reverse=True)
    return hits[:limit]
