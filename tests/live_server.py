"""A real server process on the test database, for tests that must go through a socket (not the test client)."""

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def database_url() -> str:
    """The test database as a DATABASE_URL a server process can use (TCP, or the embedded server's socket)."""
    params = connection.settings_dict
    credentials = params["USER"] + (f":{params['PASSWORD']}" if params.get("PASSWORD") else "")
    host = params.get("HOST") or "127.0.0.1"
    if host.startswith("/"):  # a unix socket folder (the embedded server listens on nothing else)
        return f"postgres://{credentials}@/{params['NAME']}?host={host}"
    return f"postgres://{credentials}@{host}:{params.get('PORT') or 5432}/{params['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def uvicorn_server(*, env: dict[str, str], log_dir: Path) -> Iterator[int]:
    """The production server (scripts/serve.sh) on a free loopback port, on the test database; yields the port.

    `env` adds to (and overrides) the server's environment; its log is in `log_dir` and shown if it
    fails to start. Stopped with SIGTERM, like a deployment's shutdown.
    """
    with uvicorn_process(env=env, log_dir=log_dir) as (_, port):
        yield port


@contextlib.contextmanager
def uvicorn_process(*, env: dict[str, str], log_dir: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    """uvicorn_server's process and port: for a test that kills it (SIGKILL, as the OOM killer would).

    The process leads its own process group; if it is still running at the end, it gets SIGTERM.
    """
    port = free_port()
    environment = {
        # Not the tests' DJANGO_SETTINGS_MODULE: config.asgi finds its settings itself, as under `make serve`.
        **{name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"},
        "DATABASE_URL": database_url(),
        "DEBUG": "false",
        "ALLOWED_HOSTS": HOST,
        "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
        # The server `make serve` runs (scripts/serve.sh), as one process: a test that SIGKILLs it
        # kills the server itself, not a supervisor whose workers would live on.
        "VENV_BIN": str(Path(sys.executable).parent),
        "HOST": HOST,
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        **env,
    }
    log_path = log_dir / "server.log"
    with log_path.open("wb") as log:
        command = ["sh", str(ROOT / "scripts" / "serve.sh")]
        process = subprocess.Popen(  # noqa: S603 - our own server, fixed arguments
            command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    conn = http.client.HTTPConnection(HOST, port, timeout=2)
                    conn.request("GET", "/api/v1/health")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
            yield process, port
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
