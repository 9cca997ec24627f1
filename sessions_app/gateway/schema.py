"""The gateway's OpenAPI description: OpenAI's request and answer shapes, and its errors in OpenAI's shape."""

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema

_STRING = {"type": "string"}
_MONEY = {"type": "string", "pattern": r"^-?\d+\.\d{6}$", "description": "Credits: a decimal with 6 places."}
_NULLABLE_MONEY = {**_MONEY, "nullable": True}
_TEXT = {"type": "string", "pattern": r"^[^\x00]*$"}
_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}

ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": _STRING,
                "type": _STRING,
                "code": {"type": "string", "nullable": True},
                "param": {"type": "string", "nullable": True},
                "metadata": {
                    "type": "object",
                    "description": "On a 402: which limit refused the call, the wallet's figures, and when the limit resets.",
                    "properties": {
                        "limit_source": {"type": "string", "enum": ["wallet", "key_limit", "spend_cap"]},
                        "balance": _MONEY,
                        "available": _MONEY,
                        "limit": _MONEY,
                        "reset_at": {"type": "string", "format": "date-time"},
                    },
                },
            },
            "required": ["message", "type", "code", "param"],
        }
    },
    "required": ["error"],
}


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ERROR, description=description)


_AUTH_ERRORS = {
    401: _error("Missing, malformed, unknown, revoked or expired API key (`code: invalid_api_key`)."),
    500: _error("An unexpected error; `error.error_id` is in the server's log line."),
    503: _error("The database connection was lost; nothing was charged (header `Retry-After`)."),
    429: OpenApiResponse(
        ERROR, description="Too many calls with this key (THROTTLE_GATEWAY_RATE); wait `Retry-After` seconds."
    ),
}

_USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
        "cost": _MONEY,
    },
    "required": ["prompt_tokens", "completion_tokens", "total_tokens", "cost"],
}
_TOOL_CALL = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[^\x00]*\S[^\x00]*$"},
        "type": {"type": "string", "enum": ["function"]},
        "function": {
            "type": "object",
            "properties": {"name": _NAME, "arguments": _TEXT},
            "required": ["name", "arguments"],
        },
    },
    "required": ["id", "type", "function"],
}
_CONTENT = {
    "oneOf": [
        _TEXT,
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["text"]},
                    "text": _TEXT,
                },
                "required": ["type", "text"],
            },
        },
    ]
}
_MESSAGE = {
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "role": {"type": "string", "enum": ["system", "developer", "user"]},
                "content": _CONTENT,
            },
            "required": ["role", "content"],
        },
        {
            "type": "object",
            "properties": {
                "role": {"type": "string", "enum": ["assistant"]},
                "content": {**_CONTENT, "nullable": True, "description": "null or absent with tool_calls."},
                "tool_calls": {"type": "array", "items": _TOOL_CALL},
            },
            "required": ["role"],
            # Its words, or the tool calls it made (or both): an assistant message with neither is refused.
            "anyOf": [
                {"required": ["content"], "properties": {"content": _CONTENT}},
                {"required": ["tool_calls"], "properties": {"tool_calls": {"type": "array", "minItems": 1}}},
            ],
        },
        {
            "type": "object",
            "properties": {
                "role": {"type": "string", "enum": ["tool"]},
                "content": _CONTENT,
                "tool_call_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 200,
                    "pattern": r"^[^\x00]*\S[^\x00]*$",
                },
            },
            "required": ["role", "content", "tool_call_id"],
        },
    ]
}
_TOOL = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["function"]},
        "function": {
            "type": "object",
            "properties": {
                "name": _NAME,
                "description": _TEXT,
                "parameters": {"type": "object"},
                "strict": {"type": "boolean"},
            },
            "required": ["name"],
        },
    },
    "required": ["type", "function"],
}
CHAT_REQUEST = {
    "type": "object",
    "properties": {
        "model": {
            "type": "string",
            "minLength": 1,
            "maxLength": 100,
            "pattern": r"^[^\x00]*\S[^\x00]*$",
            "description": "A priced model (GET /v1/models).",
        },
        "messages": {"type": "array", "items": _MESSAGE, "minItems": 1, "maxItems": 2048},
        "max_tokens": {
            "type": "integer",
            "minimum": 1,
            "maximum": settings.LLM_MAX_OUTPUT_TOKENS,
            "nullable": True,
            "description": "At most LLM_MAX_OUTPUT_TOKENS (this server's setting).",
        },
        "max_completion_tokens": {
            "type": "integer",
            "minimum": 1,
            "maximum": settings.LLM_MAX_OUTPUT_TOKENS,
            "nullable": True,
        },
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "nullable": True},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1, "nullable": True},
        "stop": {
            "oneOf": [
                {**_TEXT, "maxLength": 1000},
                {"type": "array", "items": {**_TEXT, "maxLength": 1000}, "maxItems": 4},
            ],
            "nullable": True,
        },
        "tools": {"type": "array", "items": _TOOL, "maxItems": 128, "nullable": True},
        "tool_choice": {
            "oneOf": [
                {"type": "string", "enum": ["none", "auto", "required"]},
                {
                    "type": "object",
                    "description": "A function among `tools`.",
                    "properties": {
                        "type": {"type": "string", "enum": ["function"]},
                        "function": {"type": "object", "properties": {"name": _NAME}, "required": ["name"]},
                    },
                    "required": ["type", "function"],
                },
            ],
            "nullable": True,
        },
        "stream": {
            "type": "boolean",
            "nullable": True,
            "description": "true: `text/event-stream` of `chat.completion.chunk`s, the last with `usage` (and `cost`).",
        },
        "stream_options": {"type": "object", "nullable": True},
        "user": {
            **_TEXT,
            "maxLength": 256,
            "nullable": True,
            "description": "Your end user's id, recorded with the call.",
        },
        "n": {"type": "integer", "enum": [1], "nullable": True},
    },
    "required": ["model", "messages"],
}
CHAT_COMPLETION = {
    "type": "object",
    "properties": {
        "id": _STRING,
        "object": {"type": "string", "enum": ["chat.completion"]},
        "created": {"type": "integer"},
        "model": _STRING,
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "message": {
                        "type": "object",
                        "properties": {
                            "role": {"type": "string", "enum": ["assistant"]},
                            "content": {"type": "string", "nullable": True},
                            "tool_calls": {"type": "array", "items": _TOOL_CALL},
                        },
                        "required": ["role", "content"],
                    },
                    "finish_reason": {"type": "string", "enum": ["stop", "length", "tool_calls"]},
                },
                "required": ["index", "message", "finish_reason"],
            },
        },
        "usage": _USAGE,
    },
    "required": ["id", "object", "created", "model", "choices", "usage"],
}
# One server-sent event of a stream: its `data` is a `chat.completion.chunk` as JSON (a delta; then the
# usage chunk, `choices: []` and `usage` with `cost`; or a chunk with `error`), or `[DONE]` last.
CHUNK_EVENT = {
    "type": "object",
    "properties": {
        "data": {
            "type": "string",
            "description": "A chat.completion.chunk as JSON, or [DONE] (the last event).",
        }
    },
    "required": ["data"],
}
_MODEL = {
    "type": "object",
    "properties": {
        "id": _STRING,
        "object": {"type": "string", "enum": ["model"]},
        "created": {"type": "integer"},
        "owned_by": _STRING,
        "pricing": {
            "type": "object",
            "properties": {"input_per_1k": _MONEY, "output_per_1k": _MONEY},
            "required": ["input_per_1k", "output_per_1k"],
        },
    },
    "required": ["id", "object", "created", "owned_by", "pricing"],
}
_KEY = {
    "type": "object",
    "properties": {
        "data": {
            "type": "object",
            "properties": {
                "name": _STRING,
                "prefix": _STRING,
                "limit": _NULLABLE_MONEY,
                "limit_reset": {"type": "string", "enum": ["daily", "weekly", "monthly"], "nullable": True},
                "limit_remaining": _NULLABLE_MONEY,
                "usage": _MONEY,
                "usage_daily": _MONEY,
                "usage_weekly": _MONEY,
                "usage_monthly": _MONEY,
                "expires_at": {"type": "string", "format": "date-time", "nullable": True},
                "balance": _MONEY,
                "available": _MONEY,
            },
        }
    },
    "required": ["data"],
}

_TAGS = ["gateway (OpenAI-compatible)"]

chat_completions = extend_schema(
    tags=_TAGS,
    operation_id="v1_chat_completions_create",
    summary="Chat completions, OpenAI-compatible: billed call by call to the key's owner",
    request={"application/json": CHAT_REQUEST},
    responses={
        (200, "application/json"): OpenApiResponse(
            CHAT_COMPLETION, description="The answer; headers X-Creditdesk-Cost and X-Creditdesk-Balance."
        ),
        (200, "text/event-stream"): OpenApiResponse(
            CHUNK_EVENT,
            description="With `stream: true`: `data: <chat.completion.chunk>` lines, the usage chunk, `data: [DONE]`.",
        ),
        400: _error(
            "Invalid request; `param` names the field, nothing was reserved or charged. Also a call whose "
            "worst case (prompt plus max_tokens at the model's price) is more than one call may hold "
            "(`call_too_costly`)."
        ),
        402: _error(
            "Refused before any call: the wallet is empty under enforcement, or the key's limit or a spending cap is reached."
        ),
        404: _error("The model has no price here (`code: model_not_found`)."),
        413: _error("Request body over 1 MB."),
        502: _error("The model provider failed; nothing was charged."),
        504: _error("The model provider timed out; nothing was charged."),
        **_AUTH_ERRORS,
    },
)
models_list = extend_schema(
    tags=_TAGS,
    operation_id="v1_models_list",
    summary="The models you can use, with their prices",
    responses={
        200: OpenApiResponse(
            {
                "type": "object",
                "properties": {"object": {"type": "string"}, "data": {"type": "array", "items": _MODEL}},
                "required": ["object", "data"],
            },
            description="The active, priced models.",
        ),
        **_AUTH_ERRORS,
    },
)
model_retrieve = extend_schema(
    tags=_TAGS,
    operation_id="v1_models_retrieve",
    summary="One model, with its price",
    responses={
        200: OpenApiResponse(_MODEL, description="The model."),
        404: _error("No such priced model."),
        **_AUTH_ERRORS,
    },
)
key_retrieve = extend_schema(
    tags=_TAGS,
    operation_id="v1_key_retrieve",
    summary="The API key in use: its limit, its usage by period, and the wallet's balance",
    responses={200: OpenApiResponse(_KEY, description="The key."), **_AUTH_ERRORS},
)
