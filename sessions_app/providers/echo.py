"""The echo provider: offline and deterministic (the embedded default), its tool choices read from the user's words.

The echo model "decides" deterministically from the user's words (`search for <words>`,
`read file <id>`) so the whole tool flow runs offline.
"""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence

from django.conf import settings

from sessions_app.providers.base import (
    ChatMessage,
    Completion,
    Delta,
    StreamEvent,
    ToolCallRequest,
    ToolCalls,
    Usage,
)
from sessions_app.providers.tokens import CHARS_PER_TOKEN, count_tokens, estimate_prompt_tokens

ECHO_STREAM_CHUNK_TOKENS = 4

# The echo model's simulated choice of tools, in the order the user's words name them.
ECHO_SEARCH = re.compile(
    r"search for (?P<query>.+?)(?=\s+(?:and|then)\s+read file\b|[.?!\n]|$)", re.IGNORECASE
)
ECHO_READ = re.compile(r"read file #?(?P<file_id>[0-9]{1,18})\b", re.IGNORECASE)
# The gateway's clients bring their own tools: `call <tool name> <JSON object>` asks for that one.
ECHO_CALL = re.compile(r"^\s*call (?P<name>[A-Za-z0-9_-]{1,64}) (?P<arguments>\{.*\})\s*$", re.DOTALL)


def echo_tool_choices(text: str) -> list[tuple[str, dict]]:
    """(tool, arguments) the echo model asks for, given the user's message, in the order named."""
    if (call := ECHO_CALL.match(text)) is not None:
        try:
            arguments = json.loads(call["arguments"])
        except ValueError:
            arguments = None
        if isinstance(arguments, dict):
            return [(call["name"], arguments)]
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
        options: Mapping | None = None,
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
        options: Mapping | None = None,
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
