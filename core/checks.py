"""System checks of the shared ground: throttle rates that can be counted, a switch interval the server can set."""

import math

from django.conf import settings
from django.core.checks import Error, Warning, register

from core.ratelimits import parse_rate


def positive_number(value) -> bool:
    """A setting that is a number of seconds or milliseconds: positive and finite (not NaN, not inf)."""
    return isinstance(value, int | float) and value > 0 and math.isfinite(value)


def throttle_rate_settings() -> list[str]:
    """Every THROTTLE_<SCOPE>_RATE setting, whichever app counts it."""
    return sorted({name for name in dir(settings) if name.startswith("THROTTLE_") and name.endswith("_RATE")})


@register()
def check_throttle_rates(app_configs=None, **kwargs):
    """A rate that does not parse would fail every request it throttles with a 500: refuse it here."""
    found = []
    for name in throttle_rate_settings():
        try:
            parse_rate(getattr(settings, name))
        except ValueError as exc:
            found.append(Error(f"{name}: {exc}", id="core.E001"))
    return found


@register()
def check_switch_interval(app_configs=None, **kwargs):
    """WEB_SWITCH_INTERVAL_MS: sys.setswitchinterval refuses anything but a positive number, at start-up."""
    value = settings.WEB_SWITCH_INTERVAL_MS
    if positive_number(value):
        return []
    return [
        Error(
            f"WEB_SWITCH_INTERVAL_MS must be a positive number of milliseconds, not {value!r}.",
            id="core.E002",
        )
    ]


@register()
def check_static_files_collected(app_configs=None, **kwargs):
    """A production server before collectstatic serves the apps' files as they are (core.staticfiles): say so."""
    if settings.DEBUG or settings.TESTING or settings.STATIC_COLLECTED:
        return []
    return [
        Warning(
            f"collectstatic has not run: {settings.STATIC_ROOT} has no manifest, so static files are served "
            "from the apps, unhashed and uncompressed, without long cache headers.",
            hint="Run `manage.py collectstatic --noinput` before starting the server (`make serve` does).",
            id="core.W001",
        )
    ]
