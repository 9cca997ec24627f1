"""What every provider speaks: the chat messages, a completion, a stream's events, the provider errors and the interface.

Tools use the OpenAI chat-completions format throughout: `tools` offered as function specs, a
completion's `tool_calls` (id, function name, JSON arguments), an assistant message carrying them
and one `tool` message per result. A stream is an async iterator of `Delta` (text as the model
writes it) and, last, one `Usage` (the counts the provider reports for the whole call). A provider
raises only `ProviderError` subclasses; `sessions_app.exceptions.ProviderFailed` maps them to HTTP.
"""

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NotRequired, Protocol, TypedDict


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
        options: Mapping | None = None,
    ) -> Completion: ...

    def stream(
        self,
        *,
        model: str,
        messages: Sequence[ChatMessage],
        max_output_tokens: int,
        tools: Sequence[dict] | None = None,
        options: Mapping | None = None,
    ) -> AsyncIterator[StreamEvent]: ...
