"""Helpers for the notification tests: a real worker process on the test database, and polling with a deadline."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from tests.live_server import database_url

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-webhook-secret"


def wait_for(predicate, *, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def clean_queue(django_db_blocker):
    """procrastinate's tables are not Django-managed, so flush leaves them: empty them around worker tests."""

    def truncate():
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers, "
                "procrastinate_workers CASCADE"
            )

    truncate()
    yield
    truncate()


@pytest.fixture
def worker(tmp_path, clean_queue):
    """Start `manage.py procrastinate worker` processes on the test database; each is killed at the end."""
    started = []

    def start(concurrency: int | None = 1, **env_overrides):
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "WORKER_DATABASE_URL": "",
            "SECRET_KEY": "worker-test-not-secret",
            "EMAIL_URL": "consolemail://",
            "WEBHOOK_SECRET": SECRET,
            "WORKER_STALLED_SECONDS": "2",
            "LOG_LEVEL": "INFO",
            **{k: str(v) for k, v in env_overrides.items()},
        }
        log = (tmp_path / f"worker-{len(started)}.log").open("w")
        process = subprocess.Popen(  # noqa: S603 - our own manage.py
            # A retry is scheduled ahead, and no NOTIFY says when it falls due: the worker finds it
            # when it next polls (every 5 s by default); every 0.5 s here, so a test waits less.
            [
                sys.executable,
                "manage.py",
                "procrastinate",
                "worker",
                *(["--concurrency", str(concurrency)] if concurrency is not None else []),
                "--fetch-job-polling-interval",
                "0.5",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        log.close()
