"""`make run` reads like a product: one readable line per log record, quiet periodic chores, one-line emails, a banner."""

import io
import logging
import socket

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError

from core.logging import ConsoleFormatter, QuietPeriodicJobs
from core.mail import SummaryEmailBackend


def record(message="hello", level=logging.INFO, name="billing.services", **extra):
    item = logging.LogRecord(name, level, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(item, key, value)
    return item


def test_console_lines_are_one_line_with_their_fields():
    line = ConsoleFormatter().format(record("grant recorded", user_id=7, amount="5.000000", job={"id": 1}))
    assert "\n" not in line
    assert "INFO    billing.services: grant recorded" in line
    assert "user_id=7" in line and "amount=5.000000" in line
    assert "job=" not in line  # nested values stay out of the one line


def periodic(action, result=None):
    return record(
        "Job ...",
        name="procrastinate.worker",
        action=action,
        result=result,
        job={"task_kwargs": {"timestamp": 1}},
    )


@pytest.fixture
def root_at_info():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    yield root
    root.setLevel(level)


def test_periodic_chores_that_did_nothing_are_silent(root_at_info):
    quiet = QuietPeriodicJobs()
    assert not quiet.filter(periodic("start_job"))
    assert not quiet.filter(periodic("job_success", result=0))
    assert quiet.filter(periodic("job_success", result=3))  # it did something: one line says so
    assert quiet.filter(
        record(
            "boom", name="procrastinate.worker", level=logging.ERROR, job={"task_kwargs": {"timestamp": 1}}
        )
    )
    one_off = record(
        "Starting job", name="procrastinate.worker", action="start_job", job={"task_kwargs": {"event_id": 1}}
    )
    assert quiet.filter(one_off)


def test_periodic_chores_are_logged_at_debug(root_at_info):
    root_at_info.setLevel(logging.DEBUG)
    assert QuietPeriodicJobs().filter(periodic("start_job"))


def test_a_development_email_is_one_log_line_and_a_file(tmp_path, caplog):
    backend = SummaryEmailBackend(file_path=str(tmp_path))
    message = mail.EmailMessage(
        "Your balance is low", "A long body\n" * 40, "noreply@localhost", ["a@example.com"]
    )
    with caplog.at_level(logging.INFO, logger="creditdesk.mail"):
        assert backend.send_messages([message]) == 1
    [line] = [r for r in caplog.records if r.name == "creditdesk.mail"]
    assert line.getMessage() == "email to a@example.com: Your balance is low"
    [saved] = list(tmp_path.iterdir())
    assert "A long body" in saved.read_text()


def test_banner_waits_for_the_server_then_names_the_urls_and_the_logins():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        out = io.StringIO()
        call_command("banner", host="127.0.0.1", port=port, wait=5, stdout=out)
    text = out.getvalue()
    for expected in (
        f"http://127.0.0.1:{port}/",
        "/admin/",
        "/api/v1/docs/",
        "alice",
        "support",
        "admin-demo-password",
    ):
        assert expected in text


def test_banner_gives_up_with_one_line_when_nothing_listens():
    from django.core.management.base import CommandError

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CommandError, match="did not listen"):
        call_command("banner", host="127.0.0.1", port=port, wait=0.5, stdout=io.StringIO())


@pytest.mark.parametrize("wait", ["nan", "inf", "0", "-1", "soon"])
def test_banner_refuses_a_wait_that_never_ends_or_is_no_time(wait, capsys):
    """--wait nan waited forever: NaN never compares past a deadline."""
    with pytest.raises(CommandError, match="is not a positive number of seconds"):
        call_command("banner", "--port", "1", "--wait", wait)
