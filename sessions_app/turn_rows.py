"""A turn's own rows: its messages, the turn and its calls in one statement (its tool runs in one more), built from what they return."""

from billing.models import LLMCallEvent
from core.db import execute_prepared, loaded
from sessions_app.models import ChatSession, Message, ToolCallEvent, Turn, TurnCall
from sessions_app.tools import ToolRun

SESSION, MESSAGE, TURN, TURN_CALL = (m._meta.db_table for m in (ChatSession, Message, Turn, TurnCall))

# One round trip on the hot path (prepared once per connection). No session row (deleted while the
# model was answering): every step selects FROM moved_session, so nothing is written.
TURN_ROWS_SQL = f"""
-- The session takes the turn's two messages: their orders and the history's size come from this
-- UPDATE, which also serializes the turns of one session on its row.
WITH moved_session AS (
    UPDATE {SESSION}
       SET message_count = message_count + 2,
           message_chars = message_chars + length(%(prompt)s) + length(%(reply)s),
           updated_at = %(turn_at)s
     WHERE id = %(session_id)s
 RETURNING message_count, message_chars
),
-- The user's message and the assistant's, the last two orders of the session.
new_messages AS (
    INSERT INTO {MESSAGE} (session_id, role, content, "order", created_at)
    SELECT %(session_id)s, turn_message.role, turn_message.content,
           moved_session.message_count - turn_message.back, %(turn_at)s
      FROM moved_session,
           (VALUES ('user', %(prompt)s::text, 2),
                   ('assistant', %(reply)s::text, 1)) AS turn_message (role, content, back)
 RETURNING id, role
),
-- The turn, pointing at both messages and at its first call.
new_turn AS (
    INSERT INTO {TURN} (session_id, user_message_id, assistant_message_id, llm_call_id, stop_reason, created_at)
    SELECT %(session_id)s,
           (SELECT id FROM new_messages WHERE role = 'user'),
           (SELECT id FROM new_messages WHERE role = 'assistant'),
           (%(call_ids)s::bigint[])[1],
           %(stop_reason)s,
           %(turn_at)s
      FROM moved_session
 RETURNING id
),
-- The turn's calls, in the order they were made.
turn_calls AS (
    INSERT INTO {TURN_CALL} (turn_id, llm_call_id, position)
    SELECT new_turn.id, turn_call.llm_call_id, turn_call.n - 1
      FROM new_turn,
           unnest(%(call_ids)s::bigint[]) WITH ORDINALITY AS turn_call (llm_call_id, n)
)
-- What the caller builds the rows from: the session's new size, the turn's and the messages' ids.
SELECT moved_session.message_count,
       moved_session.message_chars,
       (SELECT id FROM new_turn),
       (SELECT id FROM new_messages WHERE role = 'user'),
       (SELECT id FROM new_messages WHERE role = 'assistant')
  FROM moved_session
"""  # noqa: S608 - our own tables' names, the values all bound


def write_turn_rows(
    *,
    session: ChatSession,
    prompt: str,
    reply: str,
    events: list[LLMCallEvent],
    tool_runs: list[ToolRun],
    stop_reason: str,
    now,
) -> Turn | None:
    """Write the turn's messages, turn row, calls and tool runs (None if the session is gone).

    The caller holds the transaction. The rows are set on the returned turn (`call_events`,
    `tool_call_events` and the related rows), so serializing it reads nothing back.
    """
    rows = execute_prepared(
        TURN_ROWS_SQL,
        {
            "session_id": session.pk,
            "turn_at": now,
            "prompt": prompt,
            "reply": reply,
            "call_ids": [event.pk for event in events],
            "stop_reason": stop_reason,
        },
    )
    if not rows:
        return None
    ((count, chars, turn_id, user_message_id, assistant_message_id),) = rows
    session.message_count, session.message_chars, session.updated_at = count, chars, now

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
        llm_call_id=events[0].pk,
        stop_reason=stop_reason,
        created_at=now,
    )
    turn.session, turn.llm_call = session, events[0]
    turn.user_message = message(id=user_message_id, role=Message.Role.USER, content=prompt, order=count - 2)
    turn.assistant_message = message(
        id=assistant_message_id, role=Message.Role.ASSISTANT, content=reply, order=count - 1
    )
    turn.call_events = list(events)
    turn.tool_call_events = (
        ToolCallEvent.objects.bulk_create(
            [
                ToolCallEvent(
                    turn_id=turn_id,
                    position=position,
                    call_id=run.call_id,
                    tool=run.tool,
                    arguments=run.arguments,
                    status=ToolCallEvent.Status.OK if run.ok else ToolCallEvent.Status.ERROR,
                    error=run.error,
                    result_chars=len(run.result),
                    latency_ms=run.latency_ms,
                    created_at=now,
                )
                for position, run in enumerate(tool_runs)
            ]
        )
        if tool_runs
        else []
    )
    return turn
