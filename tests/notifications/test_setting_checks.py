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
@pytest.mark.parametrize("name", ["WEBHOOK_TIMEOUT_SECONDS", "EMAIL_TIMEOUT"])
def test_a_delivery_timeout_is_a_positive_number_of_seconds(settings, name, value, ids):
    setattr(settings, name, value)
    messages = check_delivery_settings()
    assert [message.id for message in messages] == ids
    assert all(name in message.msg for message in messages)


def test_an_smtp_server_that_never_greets_fails_the_try_within_email_timeout(settings):
    """Django's own default is no timeout: such a server held a worker slot, and the event's lock, for good."""
    import smtplib
    import socket
    import time

    from django.core.mail import get_connection

    from config import settings as configured

    assert configured.EMAIL_TIMEOUT == configured.WEBHOOK_TIMEOUT_SECONDS  # the default
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog), never says a word
    settings.EMAIL_TIMEOUT = 0.5
    started = time.monotonic()
    try:
        backend = get_connection(
            "django.core.mail.backends.smtp.EmailBackend", host="127.0.0.1", port=silent.getsockname()[1]
        )
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            backend.open()
    finally:
        silent.close()
    assert time.monotonic() - started < 3


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


@pytest.mark.parametrize(
    ("url", "ids"),
    [
        ("", []),
        ("https://hooks.example.com/creditdesk", []),
        ("http://127.0.0.1:8000/hook", []),
        ("hooks.example.com/creditdesk", ["notifications.E003"]),
        ("ftp://hooks.example.com/", ["notifications.E003"]),
        ("https://", ["notifications.E003"]),
    ],
)
def test_a_webhook_url_is_an_http_url_with_a_host(settings, url, ids):
    """A malformed URL was found only by the deliveries, each failing until it went dead."""
    settings.WEBHOOK_URL = url
    assert [message.id for message in check_delivery_settings()] == ids
