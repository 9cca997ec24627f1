"""System checks of the login lockout's settings: a value that locks out everyone, or no one, is refused."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from accounts.checks import check_lockout_settings


def test_the_defaults_pass():
    assert check_lockout_settings() == []


@pytest.mark.parametrize(
    ("name", "setting", "value", "ids"),
    [
        ("ADMIN_LOGIN_FAILURE_LIMIT", "AXES_FAILURE_LIMIT", 1, []),
        ("ADMIN_LOGIN_FAILURE_LIMIT", "AXES_FAILURE_LIMIT", 0, ["accounts.E002"]),
        ("ADMIN_LOGIN_FAILURE_LIMIT", "AXES_FAILURE_LIMIT", -2, ["accounts.E002"]),
        ("ADMIN_LOCKOUT_MINUTES", "AXES_COOLOFF_TIME", timedelta(minutes=1), []),
        ("ADMIN_LOCKOUT_MINUTES", "AXES_COOLOFF_TIME", timedelta(0), ["accounts.E002"]),
        ("ADMIN_LOCKOUT_MINUTES", "AXES_COOLOFF_TIME", timedelta(minutes=-1), ["accounts.E002"]),
    ],
)
def test_a_lockout_that_locks_everyone_or_no_one_is_refused(settings, name, setting, value, ids):
    setattr(settings, setting, value)
    messages = check_lockout_settings()
    assert [message.id for message in messages] == ids
    assert all(message.msg.startswith(f"{name}=") and name in message.hint for message in messages)


def test_a_failure_limit_of_zero_stops_the_commands_that_run_the_checks(settings):
    """With 0, every admin and sign-in login answered 429, the right password too."""
    settings.AXES_FAILURE_LIMIT = 0
    with pytest.raises(SystemCheckError, match="ADMIN_LOGIN_FAILURE_LIMIT=0 is below 1"):
        call_command("check")
