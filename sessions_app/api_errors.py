"""The one place that maps the conversation's failures to HTTP: a provider timeout is 504, any other
provider failure 502; a refused upload 415 (not text) or 413 (too big, over quota)."""

from rest_framework import status
from rest_framework.exceptions import APIException

from sessions_app.files import FileRefused, UnsupportedFileType
from sessions_app.providers import ProviderError, ProviderTimeout


class ProviderFailed(APIException):
    status_code = status.HTTP_502_BAD_GATEWAY
    default_detail = "The model provider failed to answer; nothing was charged. Try again in a moment."
    charged_detail = (
        "The model provider failed before finishing its answer; only what it had produced was charged. "
        "Try again in a moment."
    )
    default_code = "provider_error"

    def __init__(self, *, charged: bool = False):
        # The body names no provider internals: {"detail": ..., "code": ...}.
        super().__init__()
        self.detail = {
            "detail": self.charged_detail if charged else self.default_detail,
            "code": self.default_code,
        }


class ProviderTimedOut(ProviderFailed):
    status_code = status.HTTP_504_GATEWAY_TIMEOUT
    default_detail = "The model provider did not answer in time; nothing was charged. Try again in a moment."
    charged_detail = (
        "The model provider did not finish its answer in time; only what it had produced was charged. "
        "Try again in a moment."
    )
    default_code = "provider_timeout"


def provider_error_to_http(exc: ProviderError, *, charged: bool = False) -> APIException:
    """The API error for a provider failure (`charged`: mid-stream, after the model had produced something).

    The internal reason stays in the logs and the event.
    """
    cls = ProviderTimedOut if isinstance(exc, ProviderTimeout) else ProviderFailed
    return cls(charged=charged)


class FileRefusedError(APIException):
    """An upload refused by sessions_app.files: 415 for a type that is not text, else 413."""

    def __init__(self, refusal: FileRefused):
        self.status_code = (
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
            if isinstance(refusal, UnsupportedFileType)
            else status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        )
        super().__init__()
        self.detail = {"detail": refusal.message, "code": refusal.code}


def file_refusal_to_http(refusal: FileRefused) -> APIException:
    """The API error for a refused upload: the message says what to do, `code` says which rule."""
    return FileRefusedError(refusal)
