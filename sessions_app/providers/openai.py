"""Any OpenAI-compatible chat-completions endpoint, through the official client (plain and streamed calls).

The client sends the request and decodes the stream, and its errors say what failed; each
completion and chunk is read here as the JSON object it is (`post(..., cast_to=object)`), not built
into the client's typed models. A stream that ends without a `Usage` raises ProviderBadResponse:
what is billed always comes from the provider's own report.
"""

import asyncio
import functools
from collections.abc import AsyncIterator, Mapping, Sequence

from django.conf import settings

from core.text import storable
from sessions_app.providers.base import (
    ChatMessage,
    Completion,
    Delta,
    ProviderBadResponse,
    ProviderTimeout,
    ProviderUnavailable,
    StreamEvent,
    ToolCallRequest,
    ToolCalls,
    Usage,
)


@functools.lru_cache(maxsize=4)
def _openai_client(base_url: str, api_key: str, timeout: float):
    # Imported here so the echo-only deployment never pays for the client's import.
    import openai

    # One client per configuration, shared across threads (it pools connections); retries are
    # ours to decide, and a retried paid call could bill twice, so there are none.
    return openai.OpenAI(
        base_url=base_url or None,  # empty: the client's default (api.openai.com or OPENAI_BASE_URL)
        # Self-hosted OpenAI-compatible servers often need no key; the client insists on one.
        api_key=api_key or "no-key",
        timeout=timeout,
        max_retries=0,
    )


@functools.lru_cache(maxsize=4)
def _async_openai_client(base_url: str, api_key: str, timeout: float, loop: asyncio.AbstractEventLoop):
    import openai

    # The streaming path's client, one per configuration and event loop (its connections belong to
    # the loop; an ASGI server runs one per process).
    return openai.AsyncOpenAI(
        base_url=base_url or None, api_key=api_key or "no-key", timeout=timeout, max_retries=0
    )


class OpenAIProvider:
    """Any OpenAI-compatible chat-completions endpoint; token counts come from the response's usage."""

    name = "openai"

    def complete(
        self,
        *,
        model: str,
        messages: Sequence[ChatMessage],
        max_output_tokens: int,
        tools: Sequence[dict] | None = None,
        options: Mapping | None = None,
    ) -> Completion:
        """One chat completion, read as the JSON object it is (see `stream`)."""
        import openai

        timeout = float(settings.LLM_TIMEOUT_SECONDS)
        client = _openai_client(settings.LLM_BASE_URL, settings.LLM_API_KEY, timeout)
        try:
            response = client.post(
                "/chat/completions",
                body=_request_body(model, messages, max_output_tokens, tools, options),
                cast_to=object,  # the completion as its JSON object (or the body's text, if not JSON)
            )
        except openai.APITimeoutError as exc:
            raise ProviderTimeout(f"no answer within {timeout:g}s") from exc
        except openai.APIConnectionError as exc:
            raise ProviderUnavailable("connection to the provider failed") from exc
        except openai.APIStatusError as exc:
            raise ProviderUnavailable(f"provider answered HTTP {exc.status_code}") from exc
        except (openai.OpenAIError, ValueError, TypeError) as exc:
            # An unparseable body (bad JSON, wrong shape) surfaces as one of these.
            raise ProviderBadResponse(f"unreadable response ({type(exc).__name__})") from exc
        return _completion_from(response)

    async def stream(
        self,
        *,
        model: str,
        messages: Sequence[ChatMessage],
        max_output_tokens: int,
        tools: Sequence[dict] | None = None,
        options: Mapping | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """`stream=True` with `include_usage`: deltas as they come, the tool calls whole, then the usage.

        Through the client's own request, stream and errors, each chunk read as the JSON object it
        is: the client's typed chunks cost about 65 us of model building each (on the event loop
        that relays every stream of the process), and its typed request transforms every parameter;
        a plain call costs 0.7 ms of CPU less this way (docs/performance.md).
        """
        import openai

        timeout = float(settings.LLM_TIMEOUT_SECONDS)
        client = _async_openai_client(
            settings.LLM_BASE_URL, settings.LLM_API_KEY, timeout, asyncio.get_running_loop()
        )
        usage: dict = {}  # the last chunk's, when it comes
        calls: dict[int, dict] = {}  # tool calls arrive in pieces, by index
        body = {
            **_request_body(model, messages, max_output_tokens, tools, options),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        try:
            response = await client.post(
                "/chat/completions",
                body=body,
                cast_to=object,  # a chunk as its JSON object
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            try:
                async for chunk in response:
                    if not isinstance(chunk, dict):
                        raise ProviderBadResponse("malformed stream: a chunk that is not an object")
                    for choice in _items(chunk.get("choices")):
                        delta = _object(choice.get("delta"))
                        text = delta.get("content")
                        if isinstance(text, str) and text:
                            yield Delta(storable(text))  # a NUL would fail the turn's rows after it was sent
                        for piece in _items(delta.get("tool_calls")):
                            _add_tool_call_piece(calls, piece)
                    if chunk.get("usage") is not None:
                        usage = _object(chunk["usage"])
            finally:
                # Closing the response stops the model (a client that left, a cancelled task).
                await response.close()
        except ProviderBadResponse:
            raise
        except openai.APITimeoutError as exc:
            raise ProviderTimeout(f"no answer within {timeout:g}s") from exc
        except openai.APIConnectionError as exc:
            raise ProviderUnavailable("connection to the provider failed") from exc
        except openai.APIStatusError as exc:
            raise ProviderUnavailable(f"provider answered HTTP {exc.status_code}") from exc
        except (openai.OpenAIError, ValueError, TypeError) as exc:
            raise ProviderBadResponse(f"unreadable stream ({type(exc).__name__})") from exc
        except Exception as exc:  # noqa: BLE001 - only the client runs in here
            # Mid-body, the client's stream surfaces its transport's own errors (a connection cut).
            raise ProviderUnavailable(f"stream broken ({type(exc).__name__})") from exc
        if calls:
            yield ToolCalls(_tool_calls_from_pieces(calls))
        yield _usage_from(usage, malformed="malformed stream")


def _object(value) -> dict:
    """An object field of a completion or a chunk, or an empty one when it is missing or not an object."""
    return value if isinstance(value, dict) else {}


def _items(value) -> list[dict]:
    """The objects in a list field of a completion or a chunk (choices, tool calls); none when it is not a list."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _request_body(
    model: str,
    messages: Sequence[ChatMessage],
    max_output_tokens: int,
    tools: Sequence[dict] | None,
    options: Mapping | None,
) -> dict:
    """A chat-completions request; the gateway's client options (temperature, top_p, stop,
    tool_choice) go through as sent."""
    return {
        "model": model,
        "messages": [wire_message(m) for m in messages],
        "max_tokens": max_output_tokens,
        **({"tools": list(tools)} if tools else {}),
        **(options or {}),
    }


def wire_message(message: ChatMessage) -> dict:
    """A message as the chat-completions API takes it (only the keys it has)."""
    wire = {"role": message["role"], "content": message["content"]}
    if message.get("tool_calls"):
        wire["tool_calls"] = message["tool_calls"]
    if message.get("tool_call_id"):
        wire["tool_call_id"] = message["tool_call_id"]
    return wire


def _tool_calls_from(message: dict) -> tuple[ToolCallRequest, ...]:
    requests = []
    for call in _items(message.get("tool_calls")):
        function = _object(call.get("function"))
        call_id, name, arguments = call.get("id"), function.get("name"), function.get("arguments")
        if not (isinstance(call_id, str) and isinstance(name, str) and isinstance(arguments, str)):
            raise ProviderBadResponse("malformed response: a tool call without id, name or arguments")
        requests.append(
            ToolCallRequest(id=storable(call_id[:100]), name=storable(name), arguments=storable(arguments))
        )
    return tuple(requests)


def _add_tool_call_piece(calls: dict[int, dict], piece: dict) -> None:
    """Fold one streamed tool-call delta (by its index) into the calls so far."""
    index = piece.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise ProviderBadResponse("malformed stream: a tool call piece without an index")
    call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
    function = _object(piece.get("function"))
    for key, value in (
        ("id", piece.get("id")),
        ("name", function.get("name")),
        ("arguments", function.get("arguments")),
    ):
        if isinstance(value, str):
            call[key] = value if key != "arguments" else call[key] + value


def _tool_calls_from_pieces(calls: dict[int, dict]) -> tuple[ToolCallRequest, ...]:
    requests = []
    for _, call in sorted(calls.items()):
        if not (call["id"] and call["name"]):
            raise ProviderBadResponse("malformed stream: a tool call without id or name")
        requests.append(
            ToolCallRequest(
                id=storable(call["id"][:100]),
                name=storable(call["name"]),
                arguments=storable(call["arguments"]),
            )
        )
    return tuple(requests)


def _completion_from(response) -> Completion:
    """Read text, tool calls and usage from a chat completion, refusing anything that does not look like one."""
    if not isinstance(response, dict):  # a body that is not JSON comes back as its text
        raise ProviderBadResponse("malformed response: not a JSON object")
    choices = _items(response.get("choices"))
    if not choices:
        raise ProviderBadResponse("malformed response: no choices")
    message = _object(choices[0].get("message"))
    text = message.get("content")
    tool_calls = _tool_calls_from(message)
    if text is None and tool_calls:
        text = ""  # a message that only asks for tools has no content
    if not isinstance(text, str):
        raise ProviderBadResponse("malformed response: no message content")
    usage = _usage_from(_object(response.get("usage")), malformed="malformed response")
    return Completion(
        text=storable(text),  # a NUL or a lone surrogate from the model: stored as U+FFFD, not a 500
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        tool_calls=tool_calls,
    )


def _usage_from(usage: dict, *, malformed: str) -> Usage:
    """A completion's usage, or a stream's last chunk's; without one a call cannot be billed by its report."""
    input_tokens, output_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    for value in (input_tokens, output_tokens):
        # bool is an int; a count must be a real non-negative integer or we cannot bill it.
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ProviderBadResponse(f"{malformed}: no usable token usage")
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens)
