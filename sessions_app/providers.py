"""LLM providers behind one small interface: `complete(model, messages, max_output_tokens, tools)`.

`echo` (the embedded default) answers offline and deterministically; `openai` talks to any
OpenAI-compatible endpoint through the official client. A provider raises only `ProviderError`
subclasses; `sessions_app.exceptions.ProviderFailed` is the one place that maps them to HTTP.

Tools use the OpenAI chat-completions format throughout: `tools` offered as function specs, a
completion's `tool_calls` (id, function name, JSON arguments), an assistant message carrying them
and one `tool` message per result. The echo model "decides" deterministically from the user's words
(`search for <words>`, `read file <id>`) so the whole flow runs offline.

Both also stream: `stream(...)` is an async iterator of `Delta` (text as the model writes it) and,
last, one `Usage` (the counts the provider reports for the whole call). A stream that ends without
a `Usage` raises ProviderBadResponse: what is billed always comes from the provider's own report.
"""

import asyncio
import functools
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import NotRequired, Protocol, TypedDict

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
ECHO_STREAM_CHUNK_TOKENS = 4


class ChatMessage(TypedDict):
    role: str  # "system", "user", "assistant" or "tool"
    content: str
    tool_calls: NotRequired[list[dict]]  # an assistant message asking for tools (OpenAI format)
    tool_call_id: NotRequired[str]  # a tool message: the call it answers


@dataclass(frozen=True)
class ToolCallRequest:
    """A tool the model asked for: its call id, the tool's name, and the JSON arguments it wrote."""

    id: str
    name: str
    arguments: str

    def as_message_item(self) -> dict:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    tool_calls: tuple[ToolCallRequest, ...] = ()


@dataclass(frozen=True)
class Delta:
    """A piece of the reply, as the model wrote it."""

    text: str


@dataclass(frozen=True)
class Usage:
    """The token counts the provider reports for a whole streamed call (its last event)."""

    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class ToolCalls:
    """The tools the model asked for in a streamed call (before its Usage), whole."""

    calls: tuple[ToolCallRequest, ...]


StreamEvent = Delta | ToolCalls | Usage


class ProviderError(Exception):
    """The model provider failed; `reason` is a short internal description (no secrets, no body)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ProviderTimeout(ProviderError):
    """The provider did not answer within LLM_TIMEOUT_SECONDS."""


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or answered with an error status."""


class ProviderBadResponse(ProviderError):
    """The provider answered, but not with a usable completion (no text, no usage)."""


class LLMProvider(Protocol):
    name: str

    def complete(
        self,
        *,
        model: str,
        messages: Sequence[ChatMessage],
        max_output_tokens: int,
        tools: Sequence[dict] | None = None,
    ) -> Completion: ...

    def stream(
        self,
        *,
        model: str,
        messages: Sequence[ChatMessage],
        max_output_tokens: int,
        tools: Sequence[dict] | None = None,
    ) -> AsyncIterator[StreamEvent]: ...


def count_tokens(text: str) -> int:
    """The echo provider's token rule: one token per started 4 characters (0 for empty text)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def message_tokens(message: ChatMessage) -> int:
    """A message's tokens by that rule: its content and the tool calls it carries."""
    calls = message.get("tool_calls") or ()
    return count_tokens(message.get("content") or "") + sum(
        count_tokens(c["function"]["name"]) + count_tokens(c["function"]["arguments"]) for c in calls
    )


def estimate_prompt_tokens(messages: Sequence[ChatMessage], tools: Sequence[dict] | None = None) -> int:
    """Prompt tokens by the same rule, over the messages and the tools offered (for cost estimates)."""
    offered = count_tokens(json.dumps(list(tools), separators=(",", ":"))) if tools else 0
    return sum(message_tokens(message) for message in messages) + offered


# The echo model's simulated choice of tools, in the order the user's words name them.
ECHO_SEARCH = re.compile(
    r"search for (?P<query>.+?)(?=\s+(?:and|then)\s+read file\b|[.?!\n]|$)", re.IGNORECASE
)
ECHO_READ = re.compile(r"read file #?(?P<file_id>[0-9]{1,18})\b", re.IGNORECASE)


def echo_tool_choices(text: str) -> list[tuple[str, dict]]:
    """(tool, arguments) the echo model asks for, given the user's message, in the order named."""
    found = [(m.start(), "search", {"query": m["query"].strip()}) for m in ECHO_SEARCH.finditer(text)]
    found += [(m.start(), "file_read", {"file_id": int(m["file_id"])}) for m in ECHO_READ.finditer(text)]
    return [(name, arguments) for _, name, arguments in sorted(found, key=lambda f: f[0])]


class EchoProvider:
    """Offline and deterministic: replies with the last user message, capped at max_output_tokens.

    With tools offered, it first asks for each tool the user's message names (`search for <words>`,
    `read file <id>`), one per call, in order; once every one is answered it replies with the
    message and the tools' results.
    """

    name = "echo"

    def complete(
        self,
        *,
        model: str,
        messages: Sequence[ChatMessage],
        max_output_tokens: int,
        tools: Sequence[dict] | None = None,
    ) -> Completion:
        last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
        last_user = messages[last]["content"] if last is not None else ""
        since = messages[last + 1 :] if last is not None else []
        input_tokens = estimate_prompt_tokens(messages)
        offered = {t["function"]["name"] for t in tools or ()}
        wanted = [(name, args) for name, args in echo_tool_choices(last_user) if name in offered]
        asked = sum(len(m.get("tool_calls") or ()) for m in since if m["role"] == "assistant")
        if asked < len(wanted):
            name, arguments = wanted[asked]
            call = ToolCallRequest(id=f"call_{asked + 1}", name=name, arguments=json.dumps(arguments))
            return Completion(
                text="",
                input_tokens=input_tokens,
                output_tokens=count_tokens(call.name) + count_tokens(call.arguments),
                tool_calls=(call,),
            )
        names = {c["id"]: c["function"]["name"] for m in since for c in m.get("tool_calls") or ()}
        results = "".join(
            f"\n\n[{names.get(m.get('tool_call_id', ''), 'tool')}] {m['content']}"
            for m in since
            if m["role"] == "tool"
        )
        reply = f"Echo: {last_user}{results}"[: max(max_output_tokens, 1) * CHARS_PER_TOKEN]
        return Completion(text=reply, input_tokens=input_tokens, output_tokens=count_tokens(reply))

    async def stream(
        self,
        *,
        model: str,
        messages: Sequence[ChatMessage],
        max_output_tokens: int,
        tools: Sequence[dict] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """The same reply as complete(), in ECHO_STREAM_CHUNK_TOKENS-token pieces (deterministic)."""
        completion = self.complete(
            model=model, messages=messages, max_output_tokens=max_output_tokens, tools=tools
        )
        if completion.tool_calls:
            yield ToolCalls(completion.tool_calls)
        size = ECHO_STREAM_CHUNK_TOKENS * CHARS_PER_TOKEN  # whole tokens: the pieces' counts add up
        delay = float(settings.LLM_ECHO_STREAM_DELAY_SECONDS)
        for start in range(0, len(completion.text), size):
            if delay:
                await asyncio.sleep(delay)
            yield Delta(completion.text[start : start + size])
        yield Usage(input_tokens=completion.input_tokens, output_tokens=completion.output_tokens)


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
    ) -> Completion:
        import openai

        timeout = float(settings.LLM_TIMEOUT_SECONDS)
        client = _openai_client(settings.LLM_BASE_URL, settings.LLM_API_KEY, timeout)
        extra = {"tools": list(tools)} if tools else {}
        try:
            response = client.chat.completions.create(
                model=model,
                messages=[wire_message(m) for m in messages],
                max_tokens=max_output_tokens,
                **extra,
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
    ) -> AsyncIterator[StreamEvent]:
        """`stream=True` with `include_usage`: deltas as they come, the tool calls whole, then the usage."""
        import openai

        timeout = float(settings.LLM_TIMEOUT_SECONDS)
        client = _async_openai_client(
            settings.LLM_BASE_URL, settings.LLM_API_KEY, timeout, asyncio.get_running_loop()
        )
        usage = None
        calls: dict[int, dict] = {}  # tool calls arrive in pieces, by index
        extra = {"tools": list(tools)} if tools else {}
        try:
            response = await client.chat.completions.create(
                model=model,
                messages=[wire_message(m) for m in messages],
                max_tokens=max_output_tokens,
                stream=True,
                stream_options={"include_usage": True},
                **extra,
            )
            try:
                async for chunk in response:
                    for choice in getattr(chunk, "choices", None) or ():
                        delta = getattr(choice, "delta", None)
                        text = getattr(delta, "content", None)
                        if isinstance(text, str) and text:
                            yield Delta(text)
                        for piece in getattr(delta, "tool_calls", None) or ():
                            _add_tool_call_piece(calls, piece)
                    if getattr(chunk, "usage", None) is not None:
                        usage = chunk.usage
            finally:
                # Closing the response stops the model (a client that left, a cancelled task).
                await response.close()
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
        yield _usage_from(usage)


def wire_message(message: ChatMessage) -> dict:
    """A message as the chat-completions API takes it (only the keys it has)."""
    wire = {"role": message["role"], "content": message["content"]}
    if message.get("tool_calls"):
        wire["tool_calls"] = message["tool_calls"]
    if message.get("tool_call_id"):
        wire["tool_call_id"] = message["tool_call_id"]
    return wire


def _tool_calls_from(message) -> tuple[ToolCallRequest, ...]:
    calls = getattr(message, "tool_calls", None) or ()
    requests = []
    for call in calls:
        function = getattr(call, "function", None)
        call_id, name = getattr(call, "id", None), getattr(function, "name", None)
        arguments = getattr(function, "arguments", None)
        if not (isinstance(call_id, str) and isinstance(name, str) and isinstance(arguments, str)):
            raise ProviderBadResponse("malformed response: a tool call without id, name or arguments")
        requests.append(ToolCallRequest(id=call_id[:100], name=name, arguments=arguments))
    return tuple(requests)


def _add_tool_call_piece(calls: dict[int, dict], piece) -> None:
    """Fold one streamed tool-call delta (by its index) into the calls so far."""
    index = getattr(piece, "index", None)
    if not isinstance(index, int):
        raise ProviderBadResponse("malformed stream: a tool call piece without an index")
    call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
    function = getattr(piece, "function", None)
    for key, value in (
        ("id", getattr(piece, "id", None)),
        ("name", getattr(function, "name", None)),
        ("arguments", getattr(function, "arguments", None)),
    ):
        if isinstance(value, str):
            call[key] = value if key != "arguments" else call[key] + value


def _tool_calls_from_pieces(calls: dict[int, dict]) -> tuple[ToolCallRequest, ...]:
    requests = []
    for _, call in sorted(calls.items()):
        if not (call["id"] and call["name"]):
            raise ProviderBadResponse("malformed stream: a tool call without id or name")
        requests.append(ToolCallRequest(id=call["id"][:100], name=call["name"], arguments=call["arguments"]))
    return tuple(requests)


def _completion_from(response) -> Completion:
    """Read text, tool calls and usage from a chat completion, refusing anything that does not look like one."""
    choices = getattr(response, "choices", None)
    if not choices:
        raise ProviderBadResponse("malformed response: no choices")
    message = getattr(choices[0], "message", None)
    text = getattr(message, "content", None)
    tool_calls = _tool_calls_from(message)
    if text is None and tool_calls:
        text = ""  # a message that only asks for tools has no content
    if not isinstance(text, str):
        raise ProviderBadResponse("malformed response: no message content")
    usage = getattr(response, "usage", None)
    input_tokens = getattr(usage, "prompt_tokens", None)
    output_tokens = getattr(usage, "completion_tokens", None)
    for value in (input_tokens, output_tokens):
        # bool is an int; a count must be a real non-negative integer or we cannot bill it.
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ProviderBadResponse("malformed response: no usable token usage")
    return Completion(
        text=text, input_tokens=input_tokens, output_tokens=output_tokens, tool_calls=tool_calls
    )


def _usage_from(usage) -> Usage:
    """The usage of a stream's last chunk; a stream without one cannot be billed by its report."""
    input_tokens = getattr(usage, "prompt_tokens", None)
    output_tokens = getattr(usage, "completion_tokens", None)
    for value in (input_tokens, output_tokens):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ProviderBadResponse("malformed stream: no usable token usage")
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens)


_PROVIDERS: dict[str, type] = {"echo": EchoProvider, "openai": OpenAIProvider}
PROVIDER_NAMES = tuple(sorted(_PROVIDERS))


def get_provider() -> LLMProvider:
    """The provider named by LLM_PROVIDER (read on every call, so settings overrides apply)."""
    name = settings.LLM_PROVIDER
    try:
        return _PROVIDERS[name]()
    except KeyError:
        raise ImproperlyConfigured(
            f"LLM_PROVIDER={name!r} is not a known provider; use one of: {', '.join(PROVIDER_NAMES)}."
        ) from None
