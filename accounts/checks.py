"""System checks of accounts' settings: an API token lives for some time, and a user may hold one."""

from django.conf import settings
from django.core.checks import Error, register


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
