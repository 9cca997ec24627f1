"""Reads of chat sessions and turns for views and the turn flow (no writes here)."""

from dataclasses import dataclass

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank, SearchVector
from django.db.models import BigIntegerField, F, OuterRef, Prefetch, QuerySet, Subquery, Value
from django.db.models.functions import Cast

from core.db import RELAXED_COMMIT, execute_prepared, loaded_row, relaxed_commit_params, selected
from core.ratelimits import RATE_CTES, RATE_VERDICT, Hit, Verdict, hit_params, verdict
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
# The search tool ranks at most this many of a user's messages that match, the newest.
SEARCH_MESSAGES_RANKED = 200


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


# The session and its prompt history in one row, one round trip, prepared once per connection.
# Nothing is summed here: the size of the history the summary does not cover is kept on the rows.
# The same statement counts the turn against its throttle (core.ratelimits; nothing when the hit is
# null), so a turn's rate limit costs no statement of its own; the row comes back either way. It
# moves no credits, so on its own its commit is relaxed (core.db's RELAXED_COMMIT): what it may
# write (the throttle's count, and the old row versions a read prunes) waits for no WAL flush.
_SESSION_AND_HISTORY_SQL = f"""
WITH {RATE_CTES}
SELECT {RATE_VERDICT},
       session_and_history.*
  FROM (SELECT {RELAXED_COMMIT}) AS one
  LEFT JOIN LATERAL (
      -- The caller's session (nulls: not theirs, or no such session), with its current summary
      -- and the characters of the history that summary does not cover.
      SELECT {selected(ChatSession, "chat_session")},
             current_summary.text,
             current_summary.covers_turns,
             coalesce(current_summary.covers_messages, 0),
             chat_session.message_chars - coalesce(current_summary.covered_chars, 0),
             recent_history.roles,
             recent_history.contents
        FROM {ChatSession._meta.db_table} chat_session
        LEFT JOIN {SessionSummary._meta.db_table} current_summary ON current_summary.id = chat_session.summary_id
        -- The latest messages the summary does not cover, newest first, as two arrays (roles, contents).
       CROSS JOIN LATERAL (
              SELECT array_agg(uncovered.role ORDER BY uncovered.ord DESC) AS roles,
                     array_agg(uncovered.content ORDER BY uncovered.ord DESC) AS contents
                FROM (
                      -- At most HISTORY_MAX_MESSAGES of them (the character budget is applied in Python).
                      -- A session's messages are numbered 0 to message_count - 1, so the range names
                      -- those rows alone: the read is bounded whatever plan the statistics make (a
                      -- plan picked for short sessions would otherwise sort a long one's every message).
                      SELECT role, content, "order" AS ord
                        FROM {Message._meta.db_table}
                       WHERE session_id = chat_session.id
                         AND "order" >= greatest(coalesce(current_summary.covers_messages, 0),
                                                 chat_session.message_count - {HISTORY_MAX_MESSAGES})
                       ORDER BY "order" DESC
                       LIMIT {HISTORY_MAX_MESSAGES}
                     ) AS uncovered
             ) AS recent_history
       WHERE chat_session.id = %(session_id)s
         AND chat_session.owner_id = %(user_id)s
  ) AS session_and_history ON true
"""  # noqa: S608 - our tables only, the values all bound


def summary_message(summary: SummaryState) -> ChatMessage:
    """The summary as it stands in a prompt for the turns it covers."""
    return {
        "role": "system",
        "content": f"Summary of the first {summary.covers_turns} turns of this conversation:\n{summary.text}",
    }


def turn_context(*, user, session_id: int) -> TurnContext | None:
    """The session (None if it is not the user's) and its history, in one round trip."""
    return counted_turn_context(user=user, session_id=session_id, rate_hit=None)[0]


def counted_turn_context(
    *, user, session_id: int, rate_hit: Hit | None
) -> tuple[TurnContext | None, Verdict]:
    """turn_context, and `rate_hit` counted in the same statement (its verdict; None: nothing counted)."""
    ((allowed, wait, *row),) = execute_prepared(
        _SESSION_AND_HISTORY_SQL,
        {"session_id": session_id, "user_id": user.pk, **hit_params(rate_hit), **relaxed_commit_params()},
    )
    return _context_from_row(row), verdict(allowed, wait)


def _context_from_row(row: list) -> TurnContext | None:
    *session_row, summary_text, covers_turns, covers_messages, uncovered_chars, roles, contents = row
    if session_row[0] is None:  # the lateral join found no session of this user's
        return None
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

    PostgreSQL full-text search on both, each asked for `limit` hits, merged by rank. Both indexes are
    keyed by owner, then words: another user's rows are never read, however many match.
    """
    terms = SearchQuery(query, config=SEARCH_CONFIG, search_type="websearch")
    # The owner as a bigint: btree_gin (before PostgreSQL 18) indexes `bigint = bigint` only, and a
    # bare integer is an `integer`, so the indexes' owner key would go unused.
    owner = Cast(Value(user.pk), BigIntegerField())
    files = (
        UserFile.objects.filter(owner_id=owner, search_vector=terms)
        .annotate(rank=SearchRank(F("search_vector"), terms))
        .order_by("-rank", "-id")
        .values_list("id", "name", "rank")[:limit]
    )
    vector = SearchVector("content", config=SEARCH_CONFIG)
    # Only the newest matches are ranked (ranking reads each one's words again from its text), so a
    # word found in thousands of messages of a long history costs what it costs in a short one. Their
    # ids are read first: ranked as `id IN (ids)`, they are fetched by key, whatever the plan.
    newest = list(
        Message.objects.annotate(document=vector)
        .filter(owner_id=owner, document=terms)
        .order_by("-id")
        .values_list("pk", flat=True)[:SEARCH_MESSAGES_RANKED]
    )
    messages = []
    if newest:
        messages = (
            Message.objects.filter(pk__in=newest)
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
                # Read for the hits kept only, after the sort (a join would read every ranked row's session).
                title=Subquery(ChatSession.objects.filter(pk=OuterRef("session_id")).values("title")),
            )
            .order_by("-rank", "-id")
            .values_list("id", "session_id", "title", "role", "rank", "snippet")[:limit]
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
