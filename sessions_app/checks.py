"""System checks: a misconfigured LLM provider fails `manage.py check` and startup, not the first turn."""

from django.conf import settings
from django.core.checks import Error, register

from sessions_app.providers import PROVIDER_NAMES


@register()
def check_llm_settings(app_configs=None, **kwargs):
    errors = []
    if settings.LLM_PROVIDER not in PROVIDER_NAMES:
        errors.append(
            Error(
                f"LLM_PROVIDER={settings.LLM_PROVIDER!r} is not a known provider.",
                hint=f"Set LLM_PROVIDER to one of: {', '.join(PROVIDER_NAMES)}.",
                id="sessions_app.E001",
            )
        )
    if not settings.LLM_TIMEOUT_SECONDS > 0:
        errors.append(Error("LLM_TIMEOUT_SECONDS must be positive.", id="sessions_app.E002"))
    if not settings.LLM_MAX_OUTPUT_TOKENS > 0:
        errors.append(Error("LLM_MAX_OUTPUT_TOKENS must be positive.", id="sessions_app.E003"))
    if not 0 < settings.STREAM_PROGRESS_INTERVAL_SECONDS < settings.CREDIT_HOLD_TTL_SECONDS:
        # Progress is a live stream's heartbeat: written less often, its hold would expire under it.
        errors.append(
            Error(
                "STREAM_PROGRESS_INTERVAL_SECONDS must be positive and below CREDIT_HOLD_TTL_SECONDS.",
                hint="Keep the default (1) unless holds live only seconds.",
                id="sessions_app.E004",
            )
        )
    return errors
