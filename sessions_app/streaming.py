"""Streamed turns: `POST .../turns/` with `Accept: text/event-stream` answers Server-Sent Events.

The same steps as a plain turn (sessions_app.services): `prepare_turn` reserves the hold in the
view, before the response (so a refusal is a plain JSON 402 and no byte of the stream exists
without a hold); then the model's stream is read by a task of its own, which relays the text as
`delta` events and, when the provider's usage has arrived, settles the turn (`settle_turn`: the
charge and the turn's rows in one transaction) and sends `done` with the plain turn's 201 body.

How a stream ends, and what it costs:
- complete: charged with the usage the provider reported; the turn's messages are kept.
- the provider fails mid-stream: `error` event; the call is recorded as failed (`fail_turn`, cost 0,
  hold released) -- nothing is charged beyond what the provider reported, and it reported nothing.
- the client hangs up (or the server stops and cancels the request): the model is stopped and the
  call is charged with the provider's usage if it had arrived, else the prompt by the counting rule
  plus the tokens produced so far by the counting rule (`settle_abandoned_turn`, at most the hold).
  No messages are kept: the user never saw the whole reply, and can resend.
- the process dies: the hold expires after CREDIT_HOLD_TTL_SECONDS like any other (nothing charged).

Served by an ASGI server, the stream holds no worker thread and no database connection: the view's
thread gives its connection back before the response starts, and each database step after it runs
through `sync_to_async` and gives its connection back at once. No transaction spans the stream.
"""

import asyncio
import json
import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import StreamingHttpResponse

from billing import services as billing_services
from sessions_app import services
from sessions_app.api_errors import provider_error_to_http
from sessions_app.providers import Delta, ProviderError, Usage, count_tokens
from sessions_app.serializers import created_turn_body

logger = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
SESSION_GONE = {
    "detail": "This chat session was deleted while its reply was being generated.",
    "code": "not_found",
}
INTERNAL_ERROR = {"detail": "The turn failed on our side; nothing was charged.", "code": "internal_error"}
_RUNNING: set[asyncio.Task] = set()  # producers are referenced until done (asyncio keeps weak refs)


def wants_event_stream(request) -> bool:
    """Whether the Accept header asks for text/event-stream (with a q above 0)."""
    for item in request.META.get("HTTP_ACCEPT", "").split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if media.lower() != EVENT_STREAM:
            continue
        q = next((p.split("=", 1)[1] for p in params if p.lower().startswith("q=")), "1")
        try:
            if float(q) > 0:
                return True
        except ValueError:
            return True
    return False


def sse(event: str, data: dict) -> bytes:
    """One Server-Sent Event: its name and one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _give_back_connection() -> None:
    """Return this thread's connection (to the pool, or closed) unless a transaction is open.

    A stream may last minutes; a connection kept by each would exhaust the pool (or the server's
    max_connections) long before the workers are busy. Inside a transaction (the test client's)
    there is nothing to give back.
    """
    if not connection.in_atomic_block:
        connection.close()


def _db_step(function):
    """`function` as a coroutine run in the request's thread, its connection given back after."""

    def step(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            _give_back_connection()

    return sync_to_async(step, thread_sensitive=True)


def stream_turn(*, session, user, content: str, context=None) -> StreamingHttpResponse:
    """Reserve the turn (raising InsufficientCredits / PriceNotFound like take_turn) and stream it."""
    turn = services.prepare_turn(session=session, user=user, content=content, context=context)
    _give_back_connection()
    response = StreamingHttpResponse(_events(turn), content_type=EVENT_STREAM)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy in front must not buffer the stream
    return response


async def _events(turn: services.PreparedTurn):
    """The response body: relay the producer's events; a consumer that goes away stops the producer."""
    queue: asyncio.Queue = asyncio.Queue()
    producer = asyncio.create_task(_produce(turn, queue))
    _RUNNING.add(producer)
    producer.add_done_callback(_RUNNING.discard)
    try:
        while True:
            event, data = await queue.get()
            yield sse(event, data)
            if event in ("done", "error"):
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


async def _produce(turn: services.PreparedTurn, queue: asyncio.Queue) -> None:
    """Read the model's stream, relay its text, and settle the turn exactly once, however it ends."""
    produced: list[str] = []
    usage: Usage | None = None
    try:
        async for item in turn.provider.stream(
            model=turn.session.model, messages=turn.prompt, max_output_tokens=settings.LLM_MAX_OUTPUT_TOKENS
        ):
            if isinstance(item, Delta):
                produced.append(item.text)
                queue.put_nowait(("delta", {"text": item.text}))
            elif isinstance(item, Usage):
                usage = item
    except ProviderError as exc:
        if usage is not None:  # the provider reported its usage, then failed: that usage is owed
            await _settle_abandoned(turn, usage, produced, why=f"provider failed after usage: {exc.reason}")
        else:
            await _db_step(services.fail_turn)(turn, exc)
        queue.put_nowait(("error", dict(provider_error_to_http(exc).detail)))
        return
    except asyncio.CancelledError:
        await _settle_abandoned(turn, usage, produced, why="client disconnected")
        raise
    except Exception:
        logger.exception(
            "streamed turn failed", extra={"user_id": turn.user.pk, "session_id": turn.session.pk}
        )
        await _db_step(billing_services.release)(hold=turn.hold)
        queue.put_nowait(("error", INTERNAL_ERROR))
        return
    try:
        body = await _db_step(_settle_and_render)(turn, "".join(produced), usage)
    except services.SessionGone:
        queue.put_nowait(("error", SESSION_GONE))
    except Exception:
        logger.exception("streamed turn not settled", extra={"user_id": turn.user.pk})
        await _db_step(billing_services.release)(hold=turn.hold)
        queue.put_nowait(("error", INTERNAL_ERROR))
    else:
        queue.put_nowait(("done", body))


def _settle_and_render(turn: services.PreparedTurn, reply: str, usage: Usage) -> dict:
    result = services.settle_turn(
        turn, reply=reply, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens
    )
    return created_turn_body(result.turn, balance_after=result.balance_after)


async def _settle_abandoned(
    turn: services.PreparedTurn, usage: Usage | None, produced: list[str], *, why: str
):
    """Charge an undelivered stream: the provider's usage if reported, else the counting rule so far."""
    if usage is not None:
        input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
    else:
        input_tokens, output_tokens = turn.prompt_tokens, count_tokens("".join(produced))
    # Shielded: a second cancellation (the server stopping) must not interrupt the charge half-way
    # (the thread runs to its end regardless; this waits for it).
    await asyncio.shield(
        _db_step(services.settle_abandoned_turn)(
            turn, input_tokens=input_tokens, output_tokens=output_tokens, why=why
        )
    )
