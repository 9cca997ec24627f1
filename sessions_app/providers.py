"""LLM providers behind one small interface: `complete(model, messages, max_output_tokens)`.

`echo` (the embedded default) answers offline and deterministically; `openai` talks to any
OpenAI-compatible endpoint through the official client. A provider raises only `ProviderError`
subclasses; `sessions_app.api_errors` is the one place that maps them to HTTP.

Both also stream: `stream(...)` is an async iterator of `Delta` (text as the model writes it) and,
last, one `Usage` (the counts the provider reports for the whole call). A stream that ends without
a `Usage` raises ProviderBadResponse: what is billed always comes from the provider's own report.
"""

import asyncio
import functools
import logging
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypedDict

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
ECHO_STREAM_CHUNK_TOKENS = 4


class ChatMessage(TypedDict):
    role: str  # "system", "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Delta:
    """A piece of the reply, as the model wrote it."""

    text: str


@dataclass(frozen=True)
class Usage:
    """The token counts the provider reports for a whole streamed call (its last event)."""

    input_tokens: int
    output_tokens: int


StreamEvent = Delta | Usage


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
        self, *, model: str, messages: Sequence[ChatMessage], max_output_tokens: int
    ) -> Completion: ...

    def stream(
        self, *, model: str, messages: Sequence[ChatMessage], max_output_tokens: int
    ) -> AsyncIterator[StreamEvent]: ...


def count_tokens(text: str) -> int:
    """The echo provider's token rule: one token per started 4 characters (0 for empty text)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """Prompt tokens by the same rule, summed over the messages' contents (for cost estimates)."""
    return sum(count_tokens(message["content"]) for message in messages)


class EchoProvider:
    """Offline and deterministic: replies with the last user message, capped at max_output_tokens."""

    name = "echo"

    def complete(self, *, model: str, messages: Sequence[ChatMessage], max_output_tokens: int) -> Completion:
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        reply = f"Echo: {last_user}"[: max(max_output_tokens, 1) * CHARS_PER_TOKEN]
        return Completion(
            text=reply,
            input_tokens=estimate_prompt_tokens(messages),
            output_tokens=count_tokens(reply),
        )

    async def stream(
        self, *, model: str, messages: Sequence[ChatMessage], max_output_tokens: int
    ) -> AsyncIterator[StreamEvent]:
        """The same reply as complete(), in ECHO_STREAM_CHUNK_TOKENS-token pieces (deterministic)."""
        completion = self.complete(model=model, messages=messages, max_output_tokens=max_output_tokens)
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

    def complete(self, *, model: str, messages: Sequence[ChatMessage], max_output_tokens: int) -> Completion:
        import openai

        timeout = float(settings.LLM_TIMEOUT_SECONDS)
        client = _openai_client(settings.LLM_BASE_URL, settings.LLM_API_KEY, timeout)
        try:
            response = client.chat.completions.create(
                model=model,
                messages=[{"role": m["role"], "content": m["content"]} for m in messages],
                max_tokens=max_output_tokens,
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
        self, *, model: str, messages: Sequence[ChatMessage], max_output_tokens: int
    ) -> AsyncIterator[StreamEvent]:
        """`stream=True` with `include_usage`: deltas as they come, then the usage of the last chunk."""
        import openai

        timeout = float(settings.LLM_TIMEOUT_SECONDS)
        client = _async_openai_client(
            settings.LLM_BASE_URL, settings.LLM_API_KEY, timeout, asyncio.get_running_loop()
        )
        usage = None
        try:
            response = await client.chat.completions.create(
                model=model,
                messages=[{"role": m["role"], "content": m["content"]} for m in messages],
                max_tokens=max_output_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            try:
                async for chunk in response:
                    for choice in getattr(chunk, "choices", None) or ():
                        text = getattr(getattr(choice, "delta", None), "content", None)
                        if isinstance(text, str) and text:
                            yield Delta(text)
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
        yield _usage_from(usage)


def _completion_from(response) -> Completion:
    """Read text and usage from a chat completion, refusing anything that does not look like one."""
    choices = getattr(response, "choices", None)
    if not choices:
        raise ProviderBadResponse("malformed response: no choices")
    message = getattr(choices[0], "message", None)
    text = getattr(message, "content", None)
    if not isinstance(text, str):
        raise ProviderBadResponse("malformed response: no message content")
    usage = getattr(response, "usage", None)
    input_tokens = getattr(usage, "prompt_tokens", None)
    output_tokens = getattr(usage, "completion_tokens", None)
    for value in (input_tokens, output_tokens):
        # bool is an int; a count must be a real non-negative integer or we cannot bill it.
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ProviderBadResponse("malformed response: no usable token usage")
    return Completion(text=text, input_tokens=input_tokens, output_tokens=output_tokens)


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
