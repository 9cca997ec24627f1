"""LLM providers behind one small interface, `complete(model, messages, max_output_tokens, tools)` and `stream(...)`, chosen by LLM_PROVIDER.

base: the messages, completions, stream events, errors and the interface; tokens: the token-count
rule; echo: offline and deterministic (the embedded default); openai: any OpenAI-compatible endpoint.
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from sessions_app.providers.base import (
    ChatMessage,
    Completion,
    Delta,
    LLMProvider,
    ProviderBadResponse,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    StreamEvent,
    ToolCallRequest,
    ToolCalls,
    Usage,
)
from sessions_app.providers.echo import ECHO_STREAM_CHUNK_TOKENS, EchoProvider, echo_tool_choices
from sessions_app.providers.openai import OpenAIProvider, wire_message
from sessions_app.providers.tokens import (
    CHARS_PER_TOKEN,
    count_tokens,
    estimate_prompt_tokens,
    message_tokens,
)

__all__ = [
    "CHARS_PER_TOKEN",
    "ECHO_STREAM_CHUNK_TOKENS",
    "PROVIDER_NAMES",
    "ChatMessage",
    "Completion",
    "Delta",
    "EchoProvider",
    "LLMProvider",
    "OpenAIProvider",
    "ProviderBadResponse",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "StreamEvent",
    "ToolCallRequest",
    "ToolCalls",
    "Usage",
    "count_tokens",
    "echo_tool_choices",
    "estimate_prompt_tokens",
    "get_provider",
    "message_tokens",
    "wire_message",
]

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
