"""The gateway's streamed answer: `chat.completion.chunk`s as the model writes, then the usage chunk with `cost`, then `[DONE]`.

The call is reserved in the view, before the response (a refusal is a plain JSON answer, and no
byte of a stream exists without a hold); then a task of its own reads the provider's stream and
relays it. The usage chunk is always sent (whatever `stream_options` says): it carries what was
charged. As for streamed turns (sessions_app.streaming, whose database steps this reuses): the
progress is recorded on the hold (in the view before the response starts, at most once per
STREAM_PROGRESS_INTERVAL_SECONDS while it runs, and when the usage arrives); a client that hangs up
is charged what was produced (the provider's usage if it came, else the counting rule), capped at
the hold; a provider failure after the first chunk is one chunk with `error` and
`finish_reason: "error"` (charged what was produced). The first chunk waits for the model's first
item, and so does the response's status under the server `make serve` runs (core.asgi's
`holds_start`): a provider that fails before writing anything is answered as a plain call's failure,
a JSON 502/504 that the OpenAI clients retry, recorded as a failed call at no cost. (Under a server
that sends the status at once, that failure is the error chunk, after the role chunk.) A process
that dies is charged at the hold's expiry from the last progress.
"""

import asyncio
import json
import logging
import time

from django.conf import settings
from django.http import StreamingHttpResponse

from core.openai_errors import error_body
from sessions_app.exceptions import ProviderFailed
from sessions_app.gateway import answers
from sessions_app.gateway.calls import GatewayCall
from sessions_app.providers import Delta, ProviderError, ToolCalls, Usage
from sessions_app.streaming import END, HeldStream, db_step, give_back_connection, relay

logger = logging.getLogger(__name__)

INTERNAL_ERROR = {"message": "The call failed on our side; nothing was charged.", "code": "internal_error"}
ROLE = {"role": "assistant", "content": ""}  # the first chunk's delta


def stream_response(call: GatewayCall) -> StreamingHttpResponse:
    """The reserved call's stream, its progress on its hold (so a dead process is charged at expiry)
    before the response starts, on the view's connection, then given back: a stream holds none."""
    try:
        call.record_progress()
    except BaseException:
        call.release()
        raise
    give_back_connection()

    def unclaimed() -> None:
        if not call.streaming:  # the producer never ran: nothing was asked of the model
            call.release()

    response = GatewayStream(relay(lambda queue: _produce(call, queue, response)), unclaimed=unclaimed)
    return response


class GatewayStream(HeldStream):
    """The call's stream, which core.asgi starts at its first chunk (see the top)."""

    holds_start = True
    start_held = False  # set by core.asgi when it holds the status back
    instead: tuple[int, str, bytes] | None = None  # what it answers when no chunk came

    def answer_instead(self, *, status: int, message: str, code: str) -> None:
        body = error_body(message, status=status, code=code)
        self.instead = (status, "application/json", json.dumps(body).encode())


async def _produce(call: GatewayCall, queue: asyncio.Queue, response: GatewayStream) -> None:
    call.streaming = True
    id_, created, model = answers.completion_id(), int(time.time()), call.request.model
    opened = False

    def send(**parts) -> None:
        nonlocal opened
        if not opened:  # the role chunk first, once there is something to send after it
            opened = True
            queue.put_nowait(answers.chunk(id_=id_, model=model, created=created, delta=ROLE))
        queue.put_nowait(answers.chunk(id_=id_, model=model, created=created, **parts))

    produced: list[str] = []
    usage: Usage | None = None
    tool_calls: tuple = ()
    record_progress = db_step(call.record_progress)
    interval = settings.STREAM_PROGRESS_INTERVAL_SECONDS
    try:
        recorded_at = time.monotonic()
        try:
            async for item in call.provider.stream(**call.provider_arguments()):
                if isinstance(item, Delta) and item.text:
                    produced.append(item.text)
                    send(delta={"content": item.text})
                    if time.monotonic() - recorded_at >= interval:  # never per delta
                        await record_progress(produced="".join(produced))
                        recorded_at = time.monotonic()
                elif isinstance(item, ToolCalls):
                    tool_calls = item.calls
                    send(delta={"tool_calls": answers.tool_call_items(item.calls, indexed=True)})
                elif isinstance(item, Usage):
                    usage = item
                    await record_progress(usage=usage)
        except ProviderError as exc:
            if not opened and usage is None and response.start_held:  # nothing sent, nothing to charge
                await db_step(call.failed)(exc)
                error = ProviderFailed.from_provider_error(exc)
                response.answer_instead(status=error.status_code, message=error.message, code=error.code)
            else:
                await _provider_failed(call, exc, produced, usage, send)
            queue.put_nowait(END)
            return
        charged = await asyncio.shield(
            db_step(call.charge)(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
        )
        finish = answers.finish_reason(
            tool_calls=tool_calls, output_tokens=usage.output_tokens, max_tokens=call.request.max_tokens
        )
        send(finish=finish)
        send(
            usage=answers.usage_body(
                input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost=charged.event.cost
            )
        )
        queue.put_nowait(answers.DONE)
    except asyncio.CancelledError:
        # Shielded: a second cancellation (the server stopping) must not interrupt the charge. The
        # database steps run one after another in the request's thread, so this one sees the call as
        # the step before it left it: a call charged already is not charged again.
        await asyncio.shield(
            db_step(call.charge_produced)(produced="".join(produced), usage=usage, why="client disconnected")
        )
        raise
    except Exception:
        logger.exception("gateway stream failed", extra={"user_id": call.user.pk, "api_key_id": call.key.pk})
        await db_step(call.release)()
        if not opened and response.start_held:
            response.answer_instead(status=500, **INTERNAL_ERROR)
        else:
            send(finish="error", error=INTERNAL_ERROR)
    queue.put_nowait(END)


async def _provider_failed(call: GatewayCall, exc: ProviderError, produced: list[str], usage, send) -> None:
    """The provider failed mid-stream: charge what it did (if anything), and end with an error chunk."""
    if usage is not None or produced:
        charged = await asyncio.shield(
            db_step(call.charge_produced)(
                produced="".join(produced), usage=usage, why=f"provider failed: {exc.reason}"
            )
        )
        error = ProviderFailed.from_provider_error(exc, charged=True)
        send(
            finish="error",
            error={"message": error.message, "code": error.code, "cost": str(charged.event.cost)},
        )
    else:
        await db_step(call.failed)(exc)
        error = ProviderFailed.from_provider_error(exc)
        send(finish="error", error={"message": error.message, "code": error.code})
