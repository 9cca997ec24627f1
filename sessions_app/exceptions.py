"""The conversation's provider failures as domain errors: 502 when the model provider failed, 504 on its timeout."""

from core.errors import DomainError
from sessions_app.providers import ProviderError, ProviderTimeout


class ProviderFailed(DomainError):
    """The model provider failed to answer. The body names no provider internals: the reason stays
    in the logs and the failed call's event."""

    status_code = 502
    code = "provider_error"
    UNCHARGED = "The model provider failed to answer; nothing was charged. Try again in a moment."
    CHARGED = (
        "The model provider failed before finishing its answer; only what it had produced was charged. "
        "Try again in a moment."
    )

    def __init__(self, *, charged: bool = False):
        super().__init__(self.CHARGED if charged else self.UNCHARGED)

    @staticmethod
    def from_provider_error(exc: ProviderError, *, charged: bool = False) -> "ProviderFailed":
        """The error for a provider failure (`charged`: mid-stream, after the model had produced something)."""
        cls = ProviderTimedOut if isinstance(exc, ProviderTimeout) else ProviderFailed
        return cls(charged=charged)


class ProviderTimedOut(ProviderFailed):
    status_code = 504
    code = "provider_timeout"
    UNCHARGED = "The model provider did not answer in time; nothing was charged. Try again in a moment."
    CHARGED = (
        "The model provider did not finish its answer in time; only what it had produced was charged. "
        "Try again in a moment."
    )
