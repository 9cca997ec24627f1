"""Streamed turns: `POST .../turns/` with `Accept: text/event-stream` answers Server-Sent Events.

The same loop of model calls as a plain turn (sessions_app.turn_loop): `prepare_turn` reserves the
first call in the view, before the response (so a refusal is a plain JSON 402 and no byte of the
stream exists without a hold); then a task of its own makes each call with the provider's stream,
relays its text as `delta` events, hands the whole answer (text, tool calls, the provider's usage)
to the loop (which settles a tool step, runs the tools and reserves the next call), and at the end
finishes the turn (the answering call charged with the turn's rows in one transaction) and sends
`done` with the plain turn's 201 body.

While a call streams, its progress is recorded on its hold (`TurnLoop.record_progress`, one
UPDATE): before the provider is asked (the prompt by the counting rule, output 0; for the first call
in the view, on its thread and connection, before the response starts, so a burst of streams does
not queue a database step each for a connection before asking the model), at most once per
STREAM_PROGRESS_INTERVAL_SECONDS while deltas come (the output so far by the counting rule), and
when the provider's usage arrives (the reported figures). Each write also pushes the hold's expiry
one CREDIT_HOLD_TTL_SECONDS on, so a live stream's hold never expires under it.

How a stream ends, and what it costs (never $0 for tokens produced, never more than the call's hold):
- complete: every call charged with the usage the provider reported; the turn's messages are kept.
- the provider fails mid-stream after reporting its usage: that usage is charged (capped at the
  hold), `error` event, no messages kept.
- the provider fails mid-stream after the model wrote something, with no usage reported: the prompt
  and the output so far by the counting rule are charged (capped at the hold), as for a hang-up;
  `error` event (its detail says what was charged), no messages kept.
- the provider fails before the model wrote anything: on the first call, `error` event; the call is
  recorded as failed (cost 0, hold released). On a follow-up, the turn completes with what it has
  (`stop_reason: "provider_error"`).
- the client hangs up (or the server stops and cancels the request): the model is stopped and the
  open call is charged with the provider's usage if it had arrived, else the prompt by the counting
  rule plus the tokens produced so far by the counting rule (capped at the hold); tool steps already
  taken stay charged. No messages are kept: the user never saw the whole reply, and can resend.
- the process dies (SIGKILL, OOM): the open hold is charged at expiry (release_expired_holds, one
  CREDIT_HOLD_TTL_SECONDS after its last progress) with the progress last recorded (at most
  STREAM_PROGRESS_INTERVAL_SECONDS of output behind), capped at the hold; a hold that recorded none
  (the view failed before its response) is released. No messages are kept.

Served by an ASGI server, the stream holds no worker thread and no database connection: the view's
thread gives its connection back before the response starts, and each database step after it runs
through `sync_to_async` (one thread per request, so the loop's steps never overlap) and gives its
connection back at once. No transaction spans the stream.
"""

import asyncio
import json
import logging
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, StreamingHttpResponse

from billing.models import LLMCallEvent
from core.api_fields import REPLAYED_HEADER
from core.asgi import EVENT_STREAM, accepts_event_stream
from sessions_app import idempotency, services
from sessions_app.exceptions import ProviderFailed
from sessions_app.providers import Completion, Delta, ProviderError, ToolCalls, Usage
from sessions_app.serializers import created_turn_body
from sessions_app.turn_loop import PART_SEPARATOR, ModelCall, TurnLoop

logger = logging.getLogger(__name__)

SESSION_GONE = {
    "detail": "This chat session was deleted while its reply was being generated.",
    "code": "not_found",
}
INTERNAL_ERROR = {"detail": "The turn failed on our side; nothing was charged.", "code": "internal_error"}

_RUNNING: set[asyncio.Task] = set()  # producers are referenced until done (asyncio keeps weak refs)
END = None  # a producer's "nothing more" on its queue (relay)
ENDS = ("done", "error")  # a turn's last events


def internal_error(loop: TurnLoop) -> dict:
    """The error event of a turn that failed on our side, truthful about the calls it had already settled."""
    charged = sum(1 for event in loop.events if event.status == LLMCallEvent.Status.OK)
    if not charged:
        return INTERNAL_ERROR
    calls = "model call" if charged == 1 else f"{charged} model calls"
    return {
        "detail": f"The turn failed on our side; its reply was not kept. The {calls} it had finished "
        "before the failure (asking for tools) stay charged, as your ledger shows; nothing else was.",
        "code": "internal_error",
    }


def wants_event_stream(request) -> bool:
    """Whether the Accept header asks for text/event-stream (with a q above 0)."""
    return accepts_event_stream(request.META.get("HTTP_ACCEPT", ""))


def sse(event: str, data: dict) -> bytes:
    """One Server-Sent Event: its name and one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def give_back_connection() -> None:
    """Return this thread's connection (to the pool, or closed) unless a transaction is open.

    A stream may last minutes; a connection kept by each would exhaust the pool (or the server's
    max_connections) long before the workers are busy. Inside a transaction (the test client's)
    there is nothing to give back.
    """
    if not connection.in_atomic_block:
        connection.close()


def db_step(function):
    """`function` as a coroutine run in the request's thread, its connection given back after."""

    def step(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            give_back_connection()

    return sync_to_async(step, thread_sensitive=True)


class HeldStream(StreamingHttpResponse):
    """An event stream whose call holds credits from before its first byte.

    Closed (after its body, or without it) it calls `unclaimed()`, which gives the hold back when the
    stream's producer never ran: a client that left before the body was read asked the model nothing.
    """

    def __init__(self, events, *, unclaimed):
        super().__init__(events, content_type=EVENT_STREAM)
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"  # a proxy in front must not buffer the stream
        self._unclaimed = unclaimed

    def close(self) -> None:
        try:
            self._unclaimed()
        except Exception:
            # The database failed under us: the hold is left to its expiry, which charges its progress.
            logger.exception("an unread stream's hold could not be given back")
        super().close()  # request_finished: the thread's connection goes back


def stream_turn(*, session, user, content: str, context=None, claim=None) -> StreamingHttpResponse:
    """Reserve the turn's first call (raising InsufficientCredits / PriceNotFound like take_turn) and stream it.

    With an Idempotency-Key's `claim` (sessions_app.idempotency), the key is completed with the
    `done` body in the transaction that writes the turn, and freed when the stream ends without one
    (a hang-up, a failure, a stream never read), as a failed plain attempt frees it.
    """
    loop = services.prepare_turn(session=session, user=user, content=content, context=context)
    call = loop.next_call()  # reserved by prepare_turn: no statement
    try:
        loop.record_progress(call)  # on its hold before the response starts (see the top)
    except BaseException:
        loop.release_open_call()
        raise
    give_back_connection()
    key = _Key(claim)

    def unclaimed() -> None:
        if not call.sent:  # the producer sets it first thing
            loop.release_open_call()
            key.free()

    return HeldStream(_events(loop, call, key), unclaimed=unclaimed)


class _Key:
    """A streamed turn's Idempotency-Key claim (or none): completed with the turn, else freed."""

    def __init__(self, claim):
        self.claim = claim

    def record(self, body: dict, turn_id: int) -> None:
        if self.claim is not None:
            idempotency.complete(claimed=self.claim, turn_id=turn_id, response=body)

    def free(self) -> None:
        """Free the key unless its turn was written (a done claim is left as it is)."""
        if self.claim is not None:
            idempotency.release(claimed=self.claim)


def replayed_stream(body: dict) -> HttpResponse:
    """A streamed turn's replay: the first attempt's `done` event, alone (no model call, no charge)."""
    response = HttpResponse(sse("done", body), content_type=EVENT_STREAM)
    response["Cache-Control"] = "no-cache"
    response[REPLAYED_HEADER] = "true"
    return response


async def relay(produce, *, is_last=lambda item: False):
    """A response body: `produce(queue)` runs as a task of its own and what it puts on the queue is
    yielded, up to an item `is_last` accepts (sent) or END (not sent); a consumer that goes away stops it."""
    queue: asyncio.Queue = asyncio.Queue()
    producer = asyncio.create_task(produce(queue))
    _RUNNING.add(producer)
    producer.add_done_callback(_RUNNING.discard)
    try:
        while (item := await queue.get()) is not END:
            yield item
            if is_last(item):
                return
    finally:
        # Reached on a clean end, and when the client left: the ASGI handler cancels the request
        # (CancelledError at the await above), or the body is closed (GeneratorExit at the yield).
        if not producer.done():
            producer.cancel()
            try:
                await producer
            except asyncio.CancelledError:
                pass


async def _events(loop: TurnLoop, call: ModelCall, key: "_Key"):
    """The response body: the turn's events as server-sent events, up to its `done` or `error`."""
    async for event, data in relay(
        lambda queue: _produce(loop, call, queue, key), is_last=lambda item: item[0] in ENDS
    ):
        yield sse(event, data)


async def _produce(loop: TurnLoop, call: ModelCall | None, queue: asyncio.Queue, key: "_Key") -> None:
    """Make the turn's calls with the provider's stream (from `call`, the first, its progress recorded),
    relay their text, and end the turn exactly once (its key, if any, completed with it or freed)."""
    try:
        await _produce_turn(loop, call, queue, key)
    finally:
        if key.claim is not None:  # shielded, like the charges: a hang-up must not leave it claimed
            await asyncio.shield(db_step(key.free)())


async def _produce_turn(loop: TurnLoop, call: ModelCall | None, queue: asyncio.Queue, key: "_Key") -> None:
    produced: list[str] = []
    usage: Usage | None = None
    sent: list[str] = []  # every delta sent, so the reply's text is what the client read
    record_progress = db_step(loop.record_progress)
    interval = settings.STREAM_PROGRESS_INTERVAL_SECONDS
    try:
        while call is not None:
            produced, usage, tool_calls = [], None, ()
            call.sent = True
            recorded_at = time.monotonic()
            try:
                async for item in loop.provider.stream(**call.provider_arguments(loop.session.model)):
                    if isinstance(item, Delta) and item.text:
                        if sent and not produced:  # a new call's first words: apart, as in the reply
                            _send_delta(queue, sent, PART_SEPARATOR)
                        produced.append(item.text)
                        _send_delta(queue, sent, item.text)
                        if time.monotonic() - recorded_at >= interval:  # never per delta
                            await record_progress(call, produced="".join(produced))
                            recorded_at = time.monotonic()
                    elif isinstance(item, ToolCalls):
                        tool_calls = item.calls
                    elif isinstance(item, Usage):
                        usage = item
                        await record_progress(
                            call, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens
                        )
            except ProviderError as exc:
                if usage is not None or produced:
                    # The model did work before the provider failed: its reported usage is owed, else
                    # what it produced by the counting rule (as for a hang-up), capped at the hold.
                    why = "provider failed after usage" if usage is not None else "provider failed mid-stream"
                    await _charge_undelivered(loop, produced, usage, why=f"{why}: {exc.reason}")
                    queue.put_nowait(("error", ProviderFailed.from_provider_error(exc, charged=True).body()))
                    return
                try:
                    await db_step(loop.failed)(call, exc)  # re-raised when it was the turn's first call
                except ProviderError:
                    queue.put_nowait(("error", ProviderFailed.from_provider_error(exc).body()))
                    return
                break  # a follow-up failed: the turn completes with what it has
            completion = Completion(
                text="".join(produced),
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                tool_calls=tool_calls,
            )
            await db_step(loop.completed)(call, completion)
            produced, usage = [], None  # that call is the loop's now: nothing of it is open here
            call = await db_step(_next_call_recorded)(loop)
        # A turn that stopped short says so at the end of its reply: the client reads that too.
        reply, streamed = loop.reply_text(), "".join(sent)
        if reply.startswith(streamed) and len(reply) > len(streamed):
            _send_delta(queue, sent, reply[len(streamed) :])
        body = await asyncio.shield(db_step(_finish_and_render)(loop, key))
    except asyncio.CancelledError:
        await _charge_undelivered(loop, produced, usage, why="client disconnected")
        raise
    except services.SessionGone:
        queue.put_nowait(("error", SESSION_GONE))
    except Exception:
        logger.exception(
            "streamed turn failed", extra={"user_id": loop.user.pk, "session_id": loop.session.pk}
        )
        await db_step(loop.release_open_call)()
        queue.put_nowait(("error", internal_error(loop)))
    else:
        queue.put_nowait(("done", body))


def _next_call_recorded(loop: TurnLoop) -> ModelCall | None:
    """The loop's next call, reserved and on its hold (so a process that dies mid-call is charged at expiry)."""
    call = loop.next_call()
    if call is not None:
        loop.record_progress(call)
    return call


def _send_delta(queue: asyncio.Queue, sent: list[str], text: str) -> None:
    sent.append(text)
    queue.put_nowait(("delta", {"text": text}))


def _finish_and_render(loop: TurnLoop, key: "_Key") -> dict:
    bodies = []

    def before_commit(result) -> None:  # in the turn's transaction: the key is done iff the turn is
        bodies.append(created_turn_body(result.turn, balance_after=result.balance_after))
        key.record(bodies[0], result.turn.pk)

    loop.finish(before_commit=before_commit)
    return bodies[0]


async def _charge_undelivered(loop: TurnLoop, produced: list[str], usage: Usage | None, *, why: str) -> None:
    """Charge an undelivered turn's open call: the provider's usage if reported, else the counting rule so far."""
    tokens = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens} if usage else {}
    # Shielded: a second cancellation (the server stopping) must not interrupt the charge half-way.
    # The loop's steps run one after another in the request's thread, so this sees the loop as the
    # step before it left it (a turn already finished is not charged again).
    await asyncio.shield(db_step(loop.charge_undelivered)(produced="".join(produced), why=why, **tokens))
