"""Reads of one customer's conversations for the pages that show them: the user's chat pages and the console's customer and turn pages."""

from dataclasses import dataclass

from django.db.models import Prefetch, QuerySet

from sessions_app.models import ChatSession, ToolCallEvent, Turn, TurnCall
from sessions_app.selectors import sessions_for_user, turns_for_session


def recent_sessions(*, user, limit: int) -> list[ChatSession]:
    """The user's most recently active sessions (the API's list, cut to `limit`)."""
    return list(sessions_for_user(user=user)[:limit])


def recent_turns(*, sessions: list[ChatSession], limit: int) -> list[Turn]:
    """The newest turns of these sessions (newest first), with both messages, in one query.

    Bounded by the sessions' ids (the (session, id) index), never a scan of everyone's turns.
    """
    if not sessions:
        return []
    return list(
        Turn.objects.filter(session_id__in=[s.pk for s in sessions])
        .select_related("session", "user_message", "assistant_message")
        .order_by("-id")[:limit]
    )


@dataclass(frozen=True)
class TurnPage:
    turns: list[Turn]  # oldest first, as a conversation reads
    earlier_before: int | None  # pass as `before` for the page of earlier turns; None: these are the first


def turns_page(*, session: ChatSession, size: int, before: int | None = None) -> TurnPage:
    """A session's last `size` turns with an id below `before` (all, without it), oldest first, as the API
    lists them (messages, calls, tool runs): three queries, on any page (keyset, as the ledger's)."""
    turns = turns_for_session(session=session).order_by("-id")
    if before is not None:
        turns = turns.filter(id__lt=before)
    newest = list(turns[: size + 1])
    more = len(newest) > size
    newest = newest[:size]
    newest.reverse()
    return TurnPage(turns=newest, earlier_before=newest[0].pk if more else None)


def turn_ids_for_calls(*, call_ids: list[int]) -> dict[int, int]:
    """For metered calls made by turns, {call id: turn id}; calls of no turn are absent. One query."""
    if not call_ids:
        return {}
    return dict(TurnCall.objects.filter(llm_call_id__in=call_ids).values_list("llm_call_id", "turn_id"))


def turn_detail(*, turn_id: int) -> Turn | None:
    """A turn with its session and owner, both messages, its calls (with their events) and tool runs: three queries."""
    return (
        Turn.objects.filter(pk=turn_id)
        .select_related("session__owner", "user_message", "assistant_message")
        .prefetch_related(
            Prefetch("calls", queryset=TurnCall.objects.select_related("llm_call").order_by("position")),
            Prefetch("tool_calls", queryset=ToolCallEvent.objects.order_by("position")),
        )
        .first()
    )


def session_turns_for_console(*, session: ChatSession, limit: int) -> QuerySet[Turn]:
    """A session's newest turns for the console's session page, newest first, messages joined."""
    return (
        Turn.objects.filter(session=session)
        .select_related("user_message", "assistant_message")
        .order_by("-id")[:limit]
    )
