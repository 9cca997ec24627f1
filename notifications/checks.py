"""System checks: delivery settings that would lose or repeat deliveries fail start-up, not the first delivery."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, register

from core.checks import positive_number

# Each setting, the least it may be, and what a smaller value would do.
_AT_LEAST = (
    ("WEBHOOK_MAX_ATTEMPTS", 1, "below 1 no delivery would be tried even once before it is marked dead"),
    ("WEBHOOK_RETRY_BASE_SECONDS", 1, "below 1 the retries of a failing webhook would not wait at all"),
    (
        "WORKER_STALLED_SECONDS",
        1,
        "below 1 every running job would look stalled and run again beside itself: deliveries twice",
    ),
    ("WORKER_CONCURRENCY", 1, "below 1 a worker would run no job at all"),
)


@register()
def check_delivery_settings(app_configs=None, **kwargs):
    errors = []
    for name in ("WEBHOOK_TIMEOUT_SECONDS", "EMAIL_TIMEOUT"):
        timeout = getattr(settings, name)
        if not positive_number(timeout):
            errors.append(
                Error(
                    f"{name} must be a positive number of seconds, not {timeout!r}.",
                    hint="0 would fail every delivery at once, a negative value in the middle of each.",
                    id="notifications.E001",
                )
            )
    for name, least, why in _AT_LEAST:
        value = getattr(settings, name)
        if not (isinstance(value, int) and value >= least):
            errors.append(
                Error(
                    f"{name} must be a whole number of at least {least}, not {value!r}: {why}.",
                    id="notifications.E002",
                )
            )
    url = settings.WEBHOOK_URL
    if url and not (url.startswith(("http://", "https://")) and urlsplit(url).hostname):
        errors.append(
            Error(
                f"WEBHOOK_URL must be an http(s) URL with a host, not {url!r}.",
                hint="Every delivery to it would fail and go dead; e.g. https://hooks.example.com/creditdesk.",
                id="notifications.E003",
            )
        )
    return errors
