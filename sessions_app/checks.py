"""System checks: a misconfigured LLM provider fails `manage.py check` and startup, not the first turn."""

from django.conf import settings
from django.core.checks import Error, register

from core.checks import floor_errors
from sessions_app.providers import PROVIDER_NAMES

# The largest output cap a call may have (billing.pricing's arithmetic counts on it).
MAX_OUTPUT_TOKENS_CEILING = 1_000_000


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
    if not 0 < settings.LLM_MAX_OUTPUT_TOKENS <= MAX_OUTPUT_TOKENS_CEILING:
        # Also the gateway's largest max_tokens; billing.pricing.PRICE_MAX is sized on calls this long.
        errors.append(
            Error(
                f"LLM_MAX_OUTPUT_TOKENS must be from 1 to {MAX_OUTPUT_TOKENS_CEILING}.",
                hint="No model writes a million tokens in one answer; 1024 is the default.",
                id="sessions_app.E003",
            )
        )
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


@register()
def check_conversation_floors(app_configs=None, **kwargs):
    """Files, tool steps and the history kept: a value below its floor refused every upload, or summarized every turn.

    FILE_QUOTA_BYTES has a floor of 1, not 0: a quota of 0 refused every upload with "delete some files
    and try again", which no user could act on (uploads have no off switch). LLM_MAX_TOOL_STEPS may be
    0 (no tools offered), never less. LLM_CONTEXT_TOKENS below 1 made every turn pay for a summary.
    """
    return floor_errors(
        (
            ("FILE_MAX_BYTES", settings.FILE_MAX_BYTES, 1, "the largest file a user may upload, in bytes"),
            ("FILE_QUOTA_BYTES", settings.FILE_QUOTA_BYTES, 1, "how many bytes of files each user may keep"),
            (
                "LLM_MAX_TOOL_STEPS",
                settings.LLM_MAX_TOOL_STEPS,
                0,
                "how many model calls may answer tool results in one turn (0: no tools offered)",
            ),
            (
                "LLM_CONTEXT_TOKENS",
                settings.LLM_CONTEXT_TOKENS,
                1,
                "how many tokens of history a turn sends before the older part is summarized",
            ),
        ),
        id="sessions_app.E005",
    )
