"""The token-count rule: the echo provider's counts, and every estimate a hold is sized on."""

import json
import math
from collections.abc import Sequence

from sessions_app.providers.base import ChatMessage

CHARS_PER_TOKEN = 4


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
