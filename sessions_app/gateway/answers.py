"""What the gateway answers, in OpenAI's shapes: a `chat.completion`, its `chat.completion.chunk`s, and `usage` with `cost`."""

import json
import time
import uuid

from core.money import format_money
from sessions_app.providers import Completion, ToolCallRequest

COST_HEADER = "X-Creditdesk-Cost"
BALANCE_HEADER = "X-Creditdesk-Balance"


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage_body(*, input_tokens: int, output_tokens: int, cost) -> dict:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "cost": format_money(cost),
    }


def finish_reason(*, tool_calls, output_tokens: int, max_tokens: int) -> str:
    if tool_calls:
        return "tool_calls"
    return "length" if output_tokens >= max_tokens else "stop"


def tool_call_items(calls: tuple[ToolCallRequest, ...], *, indexed: bool = False) -> list[dict]:
    return [{**({"index": i} if indexed else {}), **call.as_message_item()} for i, call in enumerate(calls)]


def completion_body(*, id_: str, model: str, completion: Completion, cost, max_tokens: int) -> dict:
    message = {
        "role": "assistant",
        "content": completion.text or (None if completion.tool_calls else ""),
        "refusal": None,
    }
    if completion.tool_calls:
        message["tool_calls"] = tool_call_items(completion.tool_calls)
    return {
        "id": id_,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(
                    tool_calls=completion.tool_calls,
                    output_tokens=completion.output_tokens,
                    max_tokens=max_tokens,
                ),
            }
        ],
        "usage": usage_body(
            input_tokens=completion.input_tokens, output_tokens=completion.output_tokens, cost=cost
        ),
        "system_fingerprint": None,
    }


def chunk(
    *,
    id_: str,
    model: str,
    created: int,
    delta: dict | None = None,
    finish: str | None = None,
    usage: dict | None = None,
    error: dict | None = None,
) -> bytes:
    """One `data:` line of the stream: a chunk with one choice (or none, for the usage chunk)."""
    body = {"id": id_, "object": "chat.completion.chunk", "created": created, "model": model}
    if usage is not None:
        body["choices"] = []
        body["usage"] = usage
    else:
        body["choices"] = [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]
    if error is not None:
        body["error"] = error
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
