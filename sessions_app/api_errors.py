"""The one place that maps a provider failure to HTTP: a timeout is 504, anything else 502."""

from rest_framework import status
from rest_framework.exceptions import APIException

from sessions_app.providers import ProviderError, ProviderTimeout


class ProviderFailed(APIException):
    status_code = status.HTTP_502_BAD_GATEWAY
    default_detail = "The model provider failed to answer; nothing was charged. Try again in a moment."
    default_code = "provider_error"

    def __init__(self):
        # The body names no provider internals: {"detail": ..., "code": ...}.
        super().__init__()
        self.detail = {"detail": self.default_detail, "code": self.default_code}


class ProviderTimedOut(ProviderFailed):
    status_code = status.HTTP_504_GATEWAY_TIMEOUT
    default_detail = "The model provider did not answer in time; nothing was charged. Try again in a moment."
    default_code = "provider_timeout"


def provider_error_to_http(exc: ProviderError) -> APIException:
    """The API error for a provider failure; the internal reason stays in the logs and the event."""
    return ProviderTimedOut() if isinstance(exc, ProviderTimeout) else ProviderFailed()
