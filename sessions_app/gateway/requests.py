"""The Chat Completions body, validated in OpenAI's terms: each refusal is a 400 naming the `param` at fault.

Roles `system`, `developer`, `user`, `assistant`, `tool`; content a string or a list of text parts;
the client's `tools` (function specs) and `tool_choice` go to the model as given. Options the
gateway cannot honour are refused, not ignored (`n` other than 1); options it does not know are
ignored, as OpenAI's API ignores them.
"""

import re
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings

from core.text import LONE_SURROGATE
from sessions_app.gateway.errors import InvalidRequest
from sessions_app.providers import ChatMessage

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_MESSAGES = 2048
MAX_TOOLS = 128
MAX_STOP = 4
MODEL_MAX = 100
END_USER_MAX = 256
NUL = "\x00"
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[ChatMessage]
    max_tokens: int
    tools: list[dict] | None = None
    stream: bool = False
    end_user: str = ""
    # What goes to an OpenAI-compatible upstream as sent (temperature, top_p, stop, tool_choice).
    options: dict = field(default_factory=dict)


def _refuse(message: str, param: str | None, code: str = "invalid_value"):
    error = InvalidRequest(message, field=param)
    error.code = code
    raise error


def _text(value, param: str, *, limit: int | None = None, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        _refuse(f"{param} must be a string.", param, "invalid_type")
    if NUL in value:
        _refuse(f"{param} contains a NUL character.", param)
    if LONE_SURROGATE.search(value):
        _refuse(
            f"{param} contains a lone surrogate (\\ud800-\\udfff without its pair): not valid Unicode text.",
            param,
        )
    if limit is not None and len(value) > limit:
        _refuse(f"{param} is longer than {limit} characters.", param)
    if not allow_empty and not value.strip():
        _refuse(f"{param} must not be empty.", param)
    return value


def _number(value, param: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        _refuse(f"{param} must be a number.", param, "invalid_type")
    if not low <= value <= high:
        _refuse(f"{param} must be from {low:g} to {high:g}.", param)
    return float(value)


def _function_name(value, param: str) -> str:
    name = _text(value, param, limit=64, allow_empty=False)
    if not FUNCTION_NAME.fullmatch(name):
        _refuse(f"{param} must be 1 to 64 letters, digits, underscores or dashes.", param)
    return name


def _content(value, param: str, *, role: str) -> str:
    """A message's content as one string: a string, or the text of a list of text parts."""
    if value is None and role in ("assistant",):
        return ""
    if isinstance(value, str):
        return _text(value, param)
    if isinstance(value, list):
        texts = []
        for i, part in enumerate(value):
            where = f"{param}[{i}]"
            if not isinstance(part, dict):
                _refuse(
                    f"{where} must be an object like {{'type': 'text', 'text': '...'}}.",
                    where,
                    "invalid_type",
                )
            if part.get("type") != "text":
                _refuse(f"{where}.type must be 'text': only text content is supported.", f"{where}.type")
            texts.append(_text(part.get("text"), f"{where}.text"))
        return "".join(texts)
    _refuse(f"{param} must be a string or a list of text parts.", param, "invalid_type")


def _tool_calls(value, param: str) -> list[dict]:
    if not isinstance(value, list):
        _refuse(f"{param} must be a list.", param, "invalid_type")
    calls = []
    for i, call in enumerate(value):
        where = f"{param}[{i}]"
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            _refuse(f"{where} must be a function tool call.", where, "invalid_type")
        function = call["function"]
        calls.append(
            {
                "id": _text(call.get("id"), f"{where}.id", limit=200, allow_empty=False),
                "type": "function",
                "function": {
                    "name": _text(
                        function.get("name"), f"{where}.function.name", limit=64, allow_empty=False
                    ),
                    "arguments": _text(function.get("arguments", ""), f"{where}.function.arguments"),
                },
            }
        )
    return calls


def _messages(value) -> list[ChatMessage]:
    if value is None:
        _refuse(
            "messages is required: a list of {role, content} objects.",
            "messages",
            "missing_required_parameter",
        )
    if not isinstance(value, list):
        _refuse("messages must be a list of {role, content} objects.", "messages", "invalid_type")
    if not value:
        _refuse("messages must not be empty.", "messages")
    if len(value) > MAX_MESSAGES:
        _refuse(f"messages holds more than {MAX_MESSAGES} messages.", "messages")
    messages: list[ChatMessage] = []
    for i, item in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            _refuse(f"{where} must be an object with role and content.", where, "invalid_type")
        role = item.get("role")
        if role not in ROLES:
            _refuse(f"{where}.role must be one of {', '.join(ROLES)}.", f"{where}.role")
        message: ChatMessage = {
            "role": role,
            "content": _content(item.get("content"), f"{where}.content", role=role),
        }
        if role == "assistant" and item.get("tool_calls") is not None:
            message["tool_calls"] = _tool_calls(item["tool_calls"], f"{where}.tool_calls")
        if role == "tool":
            message["tool_call_id"] = _text(
                item.get("tool_call_id"), f"{where}.tool_call_id", limit=200, allow_empty=False
            )
        if (
            role == "assistant"
            and not message["content"]
            and not message.get("tool_calls")
            and item.get("content") is None
        ):
            _refuse(f"{where}.content is required unless the message has tool_calls.", f"{where}.content")
        messages.append(message)
    return messages


def _tools(value) -> list[dict] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        _refuse("tools must be a list of function specs.", "tools", "invalid_type")
    if len(value) > MAX_TOOLS:
        _refuse(f"tools holds more than {MAX_TOOLS} tools.", "tools")
    tools = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(tool.get("function"), dict)
        ):
            _refuse(
                f"{where} must be {{'type': 'function', 'function': {{'name': ...}}}}.", where, "invalid_type"
            )
        function = tool["function"]
        spec = {"name": _function_name(function.get("name"), f"{where}.function.name")}
        if function.get("description") is not None:
            spec["description"] = _text(function["description"], f"{where}.function.description")
        if function.get("parameters") is not None:
            if not isinstance(function["parameters"], dict):
                _refuse(
                    f"{where}.function.parameters must be a JSON Schema object.",
                    f"{where}.function.parameters",
                    "invalid_type",
                )
            spec["parameters"] = _plain(function["parameters"], f"{where}.function.parameters")
        if function.get("strict") is not None:
            if not isinstance(function["strict"], bool):
                _refuse(
                    f"{where}.function.strict must be a boolean.", f"{where}.function.strict", "invalid_type"
                )
            spec["strict"] = function["strict"]
        tools.append({"type": "function", "function": spec})
    return tools or None


def _plain(value, param: str):
    """A JSON value with exact numbers made plain (int or float) and no NUL, to send on as JSON."""
    if isinstance(value, dict):
        return {_text(k, param): _plain(v, param) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, param) for v in value]
    if isinstance(value, str):
        return _text(value, param)
    if isinstance(value, Decimal):
        return float(value)
    return value


def _tool_choice(value, tools):
    if value is None:
        return None
    if value in ("none", "auto", "required"):
        return value
    if (
        isinstance(value, dict)
        and value.get("type") == "function"
        and isinstance(value.get("function"), dict)
    ):
        name = _function_name(value["function"].get("name"), "tool_choice.function.name")
        if not tools or name not in {t["function"]["name"] for t in tools}:
            _refuse(f"tool_choice names {name!r}, which is not one of the tools offered.", "tool_choice")
        return {"type": "function", "function": {"name": name}}
    _refuse(
        "tool_choice must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}.",
        "tool_choice",
    )


def _max_tokens(body: dict) -> int:
    """max_completion_tokens (OpenAI's current name), else max_tokens, else LLM_MAX_OUTPUT_TOKENS; both checked."""
    cap = settings.LLM_MAX_OUTPUT_TOKENS
    found = []
    for param in ("max_completion_tokens", "max_tokens"):
        value = body.get(param)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            _refuse(f"{param} must be a whole number.", param, "invalid_type")
        if not 1 <= value <= cap:
            _refuse(f"{param} must be from 1 to {cap} (this server's LLM_MAX_OUTPUT_TOKENS).", param)
        found.append(value)
    return found[0] if found else cap


def parse_chat_request(body) -> ChatRequest:
    """The validated request, or InvalidRequest (400) naming the first param at fault; nothing is written either way."""
    if not isinstance(body, dict):
        _refuse("The request body must be a JSON object.", None, "invalid_type")
    model = (
        _text(body.get("model"), "model", limit=MODEL_MAX, allow_empty=False)
        if body.get("model") is not None
        else None
    )
    if model is None:
        _refuse("model is required: GET /v1/models lists the models.", "model", "missing_required_parameter")
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        _refuse("n must be 1: this server answers one choice per request.", "n")
    messages = _messages(body.get("messages"))
    tools = _tools(body.get("tools"))
    options = {}
    for param, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
        if (value := _number(body.get(param), param, low, high)) is not None:
            options[param] = value
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or len(stops) > MAX_STOP:
            _refuse(f"stop must be a string or a list of at most {MAX_STOP} strings.", "stop", "invalid_type")
        options["stop"] = [_text(s, "stop", limit=1000) for s in stops]
    if (choice := _tool_choice(body.get("tool_choice"), tools)) is not None:
        options["tool_choice"] = choice
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        _refuse("stream must be a boolean.", "stream", "invalid_type")
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        _refuse("stream_options must be an object.", "stream_options", "invalid_type")
    end_user = body.get("user")
    end_user = "" if end_user is None else _text(end_user, "user", limit=END_USER_MAX)
    return ChatRequest(
        model=model,
        messages=messages,
        max_tokens=_max_tokens(body),
        tools=tools,
        stream=bool(stream),
        end_user=end_user,
        options=options,
    )
