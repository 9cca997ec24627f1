"""The gateway's errors: its own domain errors, and the exception handler that renders every error in OpenAI's shape."""

from rest_framework import exceptions

from billing.exceptions import InsufficientCredits
from core.api import exception_handler as core_exception_handler
from core.errors import DomainError
from core.money import format_money
from core.openai_errors import error_body


class InvalidRequest(DomainError):
    """A Chat Completions body the gateway refuses; `field` is OpenAI's `param` (`messages[2].role`)."""

    code = "invalid_value"


class ModelNotFound(DomainError):
    status_code = 404
    code = "model_not_found"

    def __init__(self, model: str):
        super().__init__(
            f"The model {model!r} does not exist or has no price here; GET /v1/models lists the models you can use.",
            field="model",
        )


_MISSING_KEY = (
    "Missing API key: send `Authorization: Bearer cdk_...` (create a key at /api/v1/users/me/keys)."
)


def gateway_exception_handler(exc, context):
    """core.api's handler (status, headers, rollback), its body rewritten as `{"error": {...}}`."""
    response = core_exception_handler(exc, context)
    if response is None:
        return None  # unexpected: core.middleware answers a 500 in OpenAI's shape under /v1/
    message, code, param, extra = _described(exc, response.data)
    response.data = error_body(message, status=response.status_code, code=code, param=param, **extra)
    return response


def _described(exc, data) -> tuple[str, str | None, str | None, dict]:
    """(message, code, param, extra keys) for an error."""
    if isinstance(exc, InsufficientCredits):
        metadata = {
            "limit_source": getattr(exc, "source", "wallet"),
            "balance": format_money(exc.balance),
            "available": format_money(exc.available),
        }
        if getattr(exc, "reset_at", None) is not None:
            metadata["reset_at"] = exc.reset_at.isoformat()
        if getattr(exc, "limit", None) is not None:
            metadata["limit"] = format_money(exc.limit)
        return exc.message, "insufficient_credits", None, {"metadata": metadata}
    if isinstance(exc, DomainError):
        return exc.message, exc.code, exc.field, {}
    if isinstance(exc, exceptions.NotAuthenticated):
        return _MISSING_KEY, "invalid_api_key", None, {}
    if isinstance(exc, exceptions.AuthenticationFailed):
        return str(exc.detail), "invalid_api_key", None, {}
    if isinstance(exc, exceptions.Throttled):
        detail = data.get("detail") if isinstance(data, dict) else str(exc.detail)
        return str(detail), "rate_limited", None, {}
    if isinstance(exc, exceptions.ValidationError) and isinstance(data, dict) and data:
        param, messages = next(iter(data.items()))
        first = messages[0] if isinstance(messages, list) and messages else messages
        return f"{param}: {first}", "invalid_value", param, {}
    if isinstance(exc, exceptions.ParseError):
        return str(exc.detail), "invalid_json", None, {}
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"]), data.get("code") or getattr(exc, "default_code", None), None, {}
    return str(data), getattr(exc, "default_code", None), None, {}
