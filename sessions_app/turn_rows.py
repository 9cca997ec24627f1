"""A turn's own rows: its messages, the turn, its calls and its tool runs in one statement, built from what it returns."""

from dataclasses import dataclass
from datetime import datetime

from psycopg.types.json import Jsonb

from billing.models import LLMCallEvent
from billing.services import ThenWrite
from core.db import execute_prepared, loaded
from sessions_app.models import ChatSession, Message, ToolCallEvent, Turn, TurnCall
from sessions_app.tools import ToolRun

SESSION, MESSAGE, TURN, TURN_CALL, TOOL_CALL = (
    m._meta.db_table for m in (ChatSession, Message, Turn, TurnCall, ToolCallEvent)
)

# The turn's rows as common table expressions, written either alone (TURN_ROWS_SQL, one round trip)
# or by the charge of the turn's answering call (billing's ThenWrite: no round trip of their own).
# `turn_call_ids` names the turn's calls in order; `after_wallet` is true once the charge moved the
# wallet, so the session's row is locked after the wallet's, as when the two statements ran apart.
# No session row (deleted while the model was answering): every step selects FROM moved_session, so
# nothing is written.
_TURN_ROWS_CTES = f"""
-- The session takes the turn's two messages: their orders and the history's size come from this
-- UPDATE, which also serializes the turns of one session on its row.
moved_session AS (
    UPDATE {SESSION}
       SET message_count = message_count + 2,
           message_chars = message_chars + length(%(turn_prompt)s) + length(%(turn_reply)s),
           updated_at = %(turn_at)s
     WHERE id = %(turn_session_id)s AND (SELECT after_wallet FROM turn_call_ids)
 RETURNING message_count, message_chars, owner_id
),
-- The user's message and the assistant's, the last two orders of the session.
new_messages AS (
    INSERT INTO {MESSAGE} (session_id, owner_id, role, content, "order", created_at)
    SELECT %(turn_session_id)s, moved_session.owner_id, turn_message.role, turn_message.content,
           moved_session.message_count - turn_message.back, %(turn_at)s
      FROM moved_session,
           (VALUES ('user', %(turn_prompt)s::text, 2),
                   ('assistant', %(turn_reply)s::text, 1)) AS turn_message (role, content, back)
 RETURNING id, role
),
-- The turn, pointing at both messages and at its first call.
new_turn AS (
    INSERT INTO {TURN} (session_id, user_message_id, assistant_message_id, llm_call_id, stop_reason, created_at)
    SELECT %(turn_session_id)s,
           (SELECT id FROM new_messages WHERE role = 'user'),
           (SELECT id FROM new_messages WHERE role = 'assistant'),
           (SELECT ids[1] FROM turn_call_ids),
           %(turn_stop_reason)s,
           %(turn_at)s
      FROM moved_session
 RETURNING id
),
-- The turn's calls, in the order they were made.
turn_calls AS (
    INSERT INTO {TURN_CALL} (turn_id, llm_call_id, position)
    SELECT new_turn.id, turn_call.llm_call_id, turn_call.n - 1
      FROM new_turn,
           unnest((SELECT ids FROM turn_call_ids)) WITH ORDINALITY AS turn_call (llm_call_id, n)
)
"""  # noqa: S608 - our own tables' names, the values all bound
# The tools it ran, for a turn that ran any (a plain turn's statement has no such step to set up).
_TOOL_RUNS_CTE = f"""
,
-- The tools it ran, in the order they ran: one array a column.
tool_runs AS (
    INSERT INTO {TOOL_CALL} (turn_id, position, call_id, tool, arguments, status, error, result_chars,
                             latency_ms, created_at)
    SELECT new_turn.id, tool_run.n - 1, tool_run.call_id, tool_run.tool, tool_run.arguments,
           tool_run.status, tool_run.error, tool_run.result_chars, tool_run.latency_ms, %(turn_at)s
      FROM new_turn,
           unnest(%(tool_call_ids)s::text[], %(tool_names)s::text[], %(tool_arguments)s::jsonb[],
                  %(tool_statuses)s::text[], %(tool_errors)s::text[], %(tool_result_chars)s::int[],
                  %(tool_latencies_ms)s::int[])
               WITH ORDINALITY AS tool_run (call_id, tool, arguments, status, error, result_chars,
                                            latency_ms, n)
 RETURNING id, position
)
"""  # noqa: S608 - our own tables' names, the values all bound
# What the rows are built from: the session's new size (NULL: no session), the turn's, the messages'
# and the tool runs' ids (NULL: none ran). Each text comes in two, without and with the tool runs
# (keyed by whether the turn ran a tool): prepared apart, one per connection each.
_TURN_ROWS_COLUMNS = {
    tools: f"""
, (SELECT message_count FROM moved_session)
, (SELECT message_chars FROM moved_session)
, (SELECT id FROM new_turn)
, (SELECT id FROM new_messages WHERE role = 'user')
, (SELECT id FROM new_messages WHERE role = 'assistant')
, {"(SELECT array_agg(id ORDER BY position) FROM tool_runs)" if tools else "NULL::bigint[]"}
"""  # noqa: S608 - fixed text, no values
    for tools in (False, True)
}
TURN_ROWS_SQL = {
    tools: f"""
WITH turn_call_ids AS (SELECT %(turn_call_ids)s::bigint[] AS ids, true AS after_wallet),
{_TURN_ROWS_CTES}{_TOOL_RUNS_CTE if tools else ""}
SELECT true {_TURN_ROWS_COLUMNS[tools]}
"""  # noqa: S608 - our own tables' names, the values all bound
    for tools in (False, True)
}
# After the charge of the turn's last call: its event is that call (billing's call_event), and its
# moved_wallet says the wallet's row is locked.
_AFTER_CHARGE_CTES = {
    tools: f"""
, turn_call_ids AS (
    SELECT array_append(%(turn_earlier_call_ids)s::bigint[], (SELECT id FROM call_event)) AS ids,
           EXISTS (SELECT FROM moved_wallet) AS after_wallet
),
{_TURN_ROWS_CTES}{_TOOL_RUNS_CTE if tools else ""}
"""  # noqa: S608 - our own tables' names, the values all bound
    for tools in (False, True)
}


@dataclass(frozen=True)
class TurnText:
    """What a turn's rows say besides its calls: the session, both messages, why it stopped, when, and
    the tools it ran (in order)."""

    session: ChatSession
    prompt: str
    reply: str
    stop_reason: str
    now: datetime
    tool_runs: tuple[ToolRun, ...] = ()

    def params(self) -> dict:
        runs = self.tool_runs
        return {
            "turn_session_id": self.session.pk,
            "turn_at": self.now,
            "turn_prompt": self.prompt,
            "turn_reply": self.reply,
            "turn_stop_reason": self.stop_reason,
            "tool_call_ids": [run.call_id for run in runs],
            "tool_names": [run.tool for run in runs],
            "tool_arguments": [Jsonb(run.arguments) for run in runs],
            "tool_statuses": [_tool_status(run) for run in runs],
            "tool_errors": [run.error for run in runs],
            "tool_result_chars": [len(run.result) for run in runs],
            "tool_latencies_ms": [run.latency_ms for run in runs],
        }


def _tool_status(run: ToolRun) -> str:
    return (ToolCallEvent.Status.OK if run.ok else ToolCallEvent.Status.ERROR).value


def write_turn_rows(text: TurnText, *, events: list[LLMCallEvent]) -> Turn | None:
    """Write the turn's messages, turn row, calls and tool runs in one statement (None if the session is gone).

    The caller holds the transaction. The rows are set on the returned turn (`call_events`,
    `tool_call_events` and the related rows), so serializing it reads nothing back.
    """
    ((_, *row),) = execute_prepared(
        TURN_ROWS_SQL[bool(text.tool_runs)],
        {**text.params(), "turn_call_ids": [event.pk for event in events]},
    )
    return built_turn(text, row, events=events)


def after_charge(text: TurnText, *, earlier_events: list[LLMCallEvent]) -> ThenWrite:
    """The turn's messages, turn row, calls and tool runs, written by the charge of its last call
    (billing.ThenWrite).

    `earlier_events`: the turn's calls before that one, in order. Build the turn from the charge's
    `then_row` with built_turn().
    """
    params = {**text.params(), "turn_earlier_call_ids": [event.pk for event in earlier_events]}
    tools = bool(text.tool_runs)
    return ThenWrite(ctes=_AFTER_CHARGE_CTES[tools], columns=_TURN_ROWS_COLUMNS[tools], params=params)


def built_turn(text: TurnText, row, *, events: list[LLMCallEvent]) -> Turn | None:
    """The turn from what its rows' statement returned (_TURN_ROWS_COLUMNS); None: no session."""
    count, chars, turn_id, user_message_id, assistant_message_id, tool_run_ids = row
    if count is None:
        return None
    session, prompt, reply, now = text.session, text.prompt, text.reply, text.now
    session.message_count, session.message_chars, session.updated_at = count, chars, now

    def message(*, id: int, role: str, content: str, order: int) -> Message:
        return loaded(
            Message,
            id=id,
            session_id=session.pk,
            owner_id=session.owner_id,
            role=role,
            content=content,
            order=order,
            created_at=now,
        )

    turn = loaded(
        Turn,
        id=turn_id,
        session_id=session.pk,
        user_message_id=user_message_id,
        assistant_message_id=assistant_message_id,
        llm_call_id=events[0].pk,
        stop_reason=text.stop_reason,
        created_at=now,
    )
    turn.session, turn.llm_call = session, events[0]
    turn.user_message = message(id=user_message_id, role=Message.Role.USER, content=prompt, order=count - 2)
    turn.assistant_message = message(
        id=assistant_message_id, role=Message.Role.ASSISTANT, content=reply, order=count - 1
    )
    turn.call_events = list(events)
    turn.tool_call_events = [
        loaded(
            ToolCallEvent,
            id=tool_run_id,
            turn_id=turn_id,
            position=position,
            call_id=run.call_id,
            tool=run.tool,
            arguments=run.arguments,
            status=_tool_status(run),
            error=run.error,
            result_chars=len(run.result),
            latency_ms=run.latency_ms,
            created_at=now,
        )
        for position, (tool_run_id, run) in enumerate(zip(tool_run_ids or (), text.tool_runs, strict=True))
    ]
    return turn
