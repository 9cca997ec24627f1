"""System checks of the shared ground: throttle rates that can be counted, a switch interval the server can set,
and the server's, the replica's and HSTS's numbers not below their floors."""

import math

from django.conf import settings
from django.core.checks import Error, Warning, register

from core.ratelimits import parse_rate


def positive_number(value) -> bool:
    """A setting that is a number of seconds or milliseconds: positive and finite (not NaN, not inf)."""
    return isinstance(value, int | float) and value > 0 and math.isfinite(value)


def below(value, floor) -> bool:
    """Whether a numeric setting is under its floor: NaN, and anything that is not a number, is under every floor."""
    try:
        return not value >= floor
    except (TypeError, ArithmeticError):  # not a number; a Decimal NaN refuses to compare
        return True


def floor_errors(floors, *, id: str) -> list[Error]:
    """One Error per (variable, value, floor, meaning) whose value is under its floor, all in one wording."""
    return [
        Error(
            f"{name}={value} is below {floor}: it is {meaning}.",
            hint=f"Set {name} to {floor} or more, or unset it for its default.",
            id=id,
        )
        for name, value, floor, meaning in floors
        if below(value, floor)
    ]


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
def check_server_floors(app_configs=None, **kwargs):
    """The server's processes and threads, HSTS and the replica's limits: none of them may be negative.

    Each of these was taken as it was: uvicorn runs one process for WEB_CONCURRENCY=0, no thread pool
    starts with WEB_THREADS=0, browsers ignore a negative HSTS max-age, and a replica may never lag
    by a negative number of seconds (every read would go to the primary, quietly).
    """
    return floor_errors(
        (
            ("WEB_CONCURRENCY", settings.WEB_CONCURRENCY, 1, "how many server processes `make serve` runs"),
            (
                "WEB_THREADS",
                settings.WEB_THREADS,
                1,
                "how many threads each server process answers requests on",
            ),
            (
                "SECURE_HSTS_SECONDS",
                settings.SECURE_HSTS_SECONDS,
                0,
                "how long browsers must use HTTPS only (0 sends no HSTS header)",
            ),
            (
                "DATABASE_REPLICA_MAX_LAG",
                settings.DATABASE_REPLICA_MAX_LAG,
                0,
                "how many seconds the replica may be behind before its reads go to the primary",
            ),
            (
                "DATABASE_REPLICA_CHECK_SECONDS",
                settings.DATABASE_REPLICA_CHECK_SECONDS,
                0,
                "how long a process trusts its last look at the replica (0: a look per read)",
            ),
        ),
        id="core.E003",
    )


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
