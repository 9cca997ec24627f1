"""System checks of accounts' settings: an API token lives for some time, a user may hold one, and a login
lockout locks out only after a failure, for some time."""

from datetime import timedelta

from django.conf import settings
from django.core.checks import Error, register

from core.checks import floor_errors


@register()
def check_token_settings(app_configs=None, **kwargs):
    """AUTH_TOKEN_TTL_HOURS below 1 would hand out tokens that have expired already (a login that 401s)."""
    found = []
    for name, meaning in (
        ("AUTH_TOKEN_TTL_HOURS", "how long an API token works after login"),
        ("AUTH_TOKEN_MAX_PER_USER", "how many API tokens a user may hold at once"),
    ):
        value = getattr(settings, name)
        if not isinstance(value, int) or value < 1:
            found.append(
                Error(
                    f"{name}={value} is below 1: it is {meaning}.",
                    hint=f"Set {name} to a whole number of 1 or more, or unset it for its default.",
                    id="accounts.E001",
                )
            )
    return found


@register()
def check_lockout_settings(app_configs=None, **kwargs):
    """ADMIN_LOGIN_FAILURE_LIMIT=0 locked out every login, right password too (429); a lockout under a minute is none.

    django-axes takes both as they are: a limit of 0 counts every pair as locked before its first try
    (0 failures >= 0), and a cool-off of 0 or less forgets each failure at once, so nothing is ever locked.
    """
    return floor_errors(
        (
            (
                "ADMIN_LOGIN_FAILURE_LIMIT",
                settings.AXES_FAILURE_LIMIT,
                1,
                "how many failed logins of one username from one address lock that pair out",
            ),
            (
                "ADMIN_LOCKOUT_MINUTES",
                settings.AXES_COOLOFF_TIME // timedelta(minutes=1),
                1,
                "how many minutes a locked-out username and address stay locked",
            ),
        ),
        id="accounts.E002",
    )
