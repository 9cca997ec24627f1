"""System checks of the delivery settings: a value that would lose or repeat deliveries is refused at start-up."""

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from notifications.checks import check_delivery_settings


def test_the_defaults_pass():
    assert check_delivery_settings() == []


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        (10.0, []),
        (0.5, []),
        (3, []),
        (0.0, ["notifications.E001"]),
        (-1.0, ["notifications.E001"]),
        (float("nan"), ["notifications.E001"]),
        (float("inf"), ["notifications.E001"]),
    ],
)
def test_a_webhook_timeout_is_a_positive_number_of_seconds(settings, value, ids):
    settings.WEBHOOK_TIMEOUT_SECONDS = value
    messages = check_delivery_settings()
    assert [message.id for message in messages] == ids
    assert all("WEBHOOK_TIMEOUT_SECONDS" in message.msg for message in messages)


@pytest.mark.parametrize(
    "name",
    ["WEBHOOK_MAX_ATTEMPTS", "WEBHOOK_RETRY_BASE_SECONDS", "WORKER_STALLED_SECONDS", "WORKER_CONCURRENCY"],
)
@pytest.mark.parametrize(
    ("value", "ids"), [(1, []), (30, []), (0, ["notifications.E002"]), (-3, ["notifications.E002"])]
)
def test_attempts_backoff_and_the_stalled_threshold_are_at_least_one(settings, name, value, ids):
    setattr(settings, name, value)
    messages = check_delivery_settings()
    assert [message.id for message in messages] == ids
    assert all(message.msg.startswith(f"{name} must be a whole number of at least 1") for message in messages)


def test_the_check_stops_a_command_that_runs_the_checks(settings):
    """`migrate` (which `make serve`, `make run` and a deployment run first) runs the checks and stops."""
    settings.WORKER_STALLED_SECONDS = 0
    with pytest.raises(SystemCheckError, match="WORKER_STALLED_SECONDS must be a whole number of at least 1"):
        call_command("check")
