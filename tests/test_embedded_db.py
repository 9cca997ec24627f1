"""scripts/embedded_pg.py: the embedded server lives exactly as long as the runs that use it.

The tests use a throwaway data folder (EMBEDDED_PG_DIR), never the checkout's .pgdata/, and wait by
polling with a timeout: no assertion depends on how fast the machine is.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "embedded_pg.py"
TIMEOUT = 60

# The command run inside the lifetime: connect through DATABASE_URL, write `ready` with its own pid
# and the server's pid, then hold the connection open until it is killed.
HOLD = """
import os, sys, time, psycopg
conn = psycopg.connect(os.environ["DATABASE_URL"])
assert conn.execute("select current_database()").fetchone() == ("creditdesk",)
ready = sys.argv[1]
with open(ready + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(ready + ".tmp", ready)
time.sleep(600)
"""
QUERY = 'import os, psycopg; psycopg.connect(os.environ["DATABASE_URL"]).execute("select 1")'


def wait_for(condition, what: str):
    deadline = time.monotonic() + TIMEOUT
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return result


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def pgdir():
    # One data folder for the module (initdb once); each test leaves no server behind. Under /tmp,
    # not pytest's tmp_path (mode 0700): as root, the server's own user must traverse to it.
    path = Path(tempfile.mkdtemp(prefix="cd-embedpg-"))
    yield path
    subprocess.run([sys.executable, SCRIPT, "--stop"], env=script_env(path), capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def script_env(pgdir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return {**env, "EMBEDDED_PG_DIR": str(pgdir)}


class Run:
    """scripts/embedded_pg.py holding a connection open in the data folder `pgdir`."""

    def __init__(self, pgdir: Path, name: str):
        self.ready = pgdir / f"{name}.ready"
        self.ready.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, SCRIPT, sys.executable, "-c", HOLD, self.ready],
            env=script_env(pgdir),
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: self.ready.exists() or self.proc.poll() is not None, f"{name} to connect")
        assert self.proc.poll() is None, self.proc.stderr.read()
        self.command_pid = int(self.ready.read_text())

    def finish(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        _, stderr = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, stderr


def server(pgdir: Path) -> list[int]:
    """The postmaster serving `pgdir` and its children, as pids."""
    postmaster = int((pgdir / "data" / "postmaster.pid").read_text().split()[0])
    assert alive(postmaster)
    return [postmaster] + [p.pid for p in psutil.Process(postmaster).children(recursive=True)]


def serving(pgdir: Path) -> list[psutil.Process]:
    """Live postgres processes whose command line names the data folder."""
    data = str(pgdir / "data")
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and data in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


def assert_all_gone(pids: list[int], pgdir: Path) -> None:
    wait_for(lambda: not any(alive(pid) for pid in pids), f"processes {pids} to end")
    assert serving(pgdir) == []


def run_once(pgdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, SCRIPT, sys.executable, "-c", QUERY],
        env=script_env(pgdir),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_sigterm_stops_the_command_and_the_server_and_the_data_is_reused(pgdir):
    run = Run(pgdir, "first")
    processes = server(pgdir) + [run.command_pid]

    returncode, stderr = run.finish(signal.SIGTERM)

    assert returncode == -signal.SIGTERM, stderr  # it dies of the signal it was sent, as make expects
    assert "PostgreSQL on" in stderr
    assert "PostgreSQL stopped" in stderr
    assert_all_gone(processes, pgdir)

    again = run_once(pgdir)
    assert again.returncode == 0, again.stderr
    assert "(start)" in again.stderr  # the data folder is reused, no second initdb
    assert serving(pgdir) == []


def test_a_run_killed_outright_leaves_nothing_that_breaks_the_next_start(pgdir):
    run = Run(pgdir, "killed")
    postmaster, *_ = processes = server(pgdir)
    run.proc.kill()  # SIGKILL: no clean-up at all, and the server dies hard too
    run.proc.wait(timeout=TIMEOUT)
    os.kill(run.command_pid, signal.SIGKILL)
    os.kill(postmaster, signal.SIGKILL)
    assert_all_gone(processes + [run.command_pid], pgdir)
    # The stale postmaster.pid now even names a live process that is not postgres (a reused pid).
    stand_in = subprocess.Popen(["sleep", "60"])
    pidfile = pgdir / "data" / "postmaster.pid"
    lines = pidfile.read_text().split("\n")
    pidfile.write_text("\n".join([str(stand_in.pid), *lines[1:]]))
    try:
        again = run_once(pgdir)
    finally:
        stand_in.kill()
        stand_in.wait()

    assert again.returncode == 0, again.stderr
    assert serving(pgdir) == []


def test_runs_share_one_server_and_the_last_to_end_stops_it(pgdir):
    first = Run(pgdir, "first")
    processes = server(pgdir)
    second = Run(pgdir, "second")
    assert server(pgdir)[0] == processes[0]

    returncode, stderr = first.finish(signal.SIGINT)
    assert returncode == -signal.SIGINT, stderr
    assert "another run still uses the server" in stderr
    assert alive(processes[0])
    assert run_once(pgdir).returncode == 0  # a third run shares it too, and leaves it up

    returncode, stderr = second.finish(signal.SIGTERM)
    assert "sharing the server" in stderr
    assert "PostgreSQL stopped" in stderr
    assert_all_gone(processes, pgdir)


def test_the_command_exit_status_is_the_runs(pgdir):
    result = subprocess.run(
        [sys.executable, SCRIPT, "sh", "-c", 'test -n "$DATABASE_URL" && exit 3'],
        env=script_env(pgdir),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )

    assert result.returncode == 3, result.stderr
    assert serving(pgdir) == []
