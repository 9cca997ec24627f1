"""OpenAI's error shape, `{"error": {"message", "type", "code", "param"}}`, for the paths under /v1/ (the gateway).

The official OpenAI clients raise their typed errors from the status and read this body; the
gateway's views render every error through it (sessions_app.gateway.errors), and core's middleware
and fallback views use it for what escapes them under this prefix.
"""

from django.http import JsonResponse

OPENAI_PREFIX = "/v1/"
# OpenAI's `type` per status, as its own API answers them.
TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX) or path == OPENAI_PREFIX.rstrip("/")


def error_body(message: str, *, status: int, code: str | None, param: str | None = None, **extra) -> dict:
    """The body: OpenAI's four keys, plus any of ours (`metadata`) beside them."""
    return {
        "error": {
            "message": message,
            "type": TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"),
            "code": code,
            "param": param,
            **extra,
        }
    }


def error_response(message: str, *, status: int, code: str | None, param: str | None = None) -> JsonResponse:
    return JsonResponse(error_body(message, status=status, code=code, param=param), status=status)
