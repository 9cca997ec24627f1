"""The fleet (scripts/fleet.sh) as deployed: nginx, two app instances, PgBouncer 1.18 in transaction mode.

Billed turns, plain and streamed, through nginx and PgBouncer with DATABASE_SERVER_PREPARE=false,
the ledger clean on the primary, and `down` leaving none of its processes behind. Needs Debian's
nginx and pgbouncer and PostgreSQL 15's server binaries (.ci/run installs them); skips without.
"""

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from scripts.embedded_pg import pid_alive

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "scripts" / "fleet.sh"
TOOLS = ["/usr/sbin/nginx", "/usr/sbin/pgbouncer", "/usr/lib/postgresql/15/bin/initdb"]
MISSING = [tool for tool in TOOLS if not os.access(tool, os.X_OK)]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(MISSING), reason=f"the fleet needs {', '.join(MISSING)} (apt-get install nginx pgbouncer)"
    ),
]


# Below Linux's ephemeral range (32768-60999): a port chosen there could be taken, before the fleet
# binds it, by one of the many outgoing connections the fleet's start makes.
PORTS = range(20000, 32000)


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_ports(count: int, *, apps: int = 2) -> tuple[list[int], int]:
    """COUNT free ports, and an app base whose next APPS ports (app N listens on base + N) are free too."""
    start = random.randrange(PORTS.start, PORTS.stop - 1000)  # apart from another run's
    ports: list[int] = []
    candidates = iter(range(start, PORTS.stop))
    for port in candidates:
        if len(ports) == count:
            break
        if bindable(port):
            ports.append(port)
    for base in candidates:
        if all(bindable(base + n) for n in range(1, apps + 1)):
            return ports, base
    raise RuntimeError(f"no free ports in {PORTS.start}-{PORTS.stop} from {start}")


@pytest.fixture(scope="module")
def fleet():
    """A fleet of its own (own folder, free ports), up for the module's tests, then down."""
    # Under /tmp, open to the postgres user (the servers run as it when the tests run as root),
    # wherever the checkout is.
    directory = Path(tempfile.mkdtemp(prefix="creditdesk-fleet-"))
    directory.chmod(0o755)
    (port, pg_port, replica_port, pgbouncer_port, webhook_port), app_base = free_ports(5)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DJANGO_", "PYTEST"))},
        "FLEET_DIR": str(directory),
        "FLEET_PORT": str(port),
        "FLEET_PG_PORT": str(pg_port),
        "FLEET_REPLICA_PORT": str(replica_port),
        "FLEET_PGBOUNCER_PORT": str(pgbouncer_port),
        "FLEET_APP_PORT_BASE": str(app_base),
        "FLEET_WEBHOOK_PORT": str(webhook_port),
    }
    up = subprocess.run(["bash", str(FLEET), "up"], env=env, capture_output=True, text=True, timeout=300)  # noqa: S603
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield {"env": env, "url": f"http://127.0.0.1:{env['FLEET_PORT']}", "up": up.stdout, "dir": directory}
    finally:
        pids = [p.read_text().split()[0] for p in (directory / "run").glob("*.pid")]
        down = subprocess.run(
            ["bash", str(FLEET), "down"], env=env, capture_output=True, text=True, timeout=300
        )  # noqa: S603
        postmasters = list((directory / "pg").glob("*/postmaster.pid"))
        left = [pid for pid in pids if pid_alive(int(pid))]  # a zombie awaiting its reaper has exited
        shutil.rmtree(directory, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not left, f"processes left running after down: {left}"
        assert not postmasters, f"PostgreSQL servers left running after down: {postmasters}"


def call(url: str, method: str, path: str, *, token=None, body=None, headers=None):
    request = urllib.request.Request(
        url + path, method=method, data=json.dumps(body).encode() if body else None
    )
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Token {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            raw = response.read()
            return response.status, dict(response.headers), raw
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def login(url: str, username: str, password: str) -> str:
    status, _, raw = call(
        url, "POST", "/api/v1/auth/token", body={"username": username, "password": password}
    )
    assert status == 200, raw
    return json.loads(raw)["token"]


def manage(fleet, *args) -> subprocess.CompletedProcess:
    """manage.py on the fleet's primary, directly (as fleet.sh migrates)."""
    exports = subprocess.run(
        ["bash", str(FLEET), "env"], env=fleet["env"], capture_output=True, text=True, check=True
    )  # noqa: S603
    env = dict(fleet["env"])
    for line in exports.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    env["DATABASE_URL"] = env["WORKER_DATABASE_URL"]
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )  # noqa: S603


def test_up_prints_the_url_and_the_settings_it_used(fleet):
    assert fleet["url"] in fleet["up"]
    for setting in (
        "DATABASE_SERVER_PREPARE=false",
        "TRUSTED_PROXY_COUNT=1",
        "WORKER_DATABASE_URL=",
        "DATABASE_REPLICA_URL=",
    ):
        assert setting in fleet["up"]
    status = subprocess.run(["bash", str(FLEET), "status"], env=fleet["env"], capture_output=True, text=True)  # noqa: S603
    assert status.returncode == 0, status.stdout
    assert status.stdout.count(": running") == 8
    assert "not streaming" not in status.stdout  # the replica follows the primary
    # From another shell, knowing only the folder: the fleet's own ports, not the defaults (a restart
    # at 3 a.m. started app1 on 18001 against another fleet's PgBouncer).
    bare = {k: v for k, v in fleet["env"].items() if not k.startswith("FLEET_") or k == "FLEET_DIR"}
    status = subprocess.run(["bash", str(FLEET), "status"], env=bare, capture_output=True, text=True)  # noqa: S603
    assert status.returncode == 0, status.stdout
    assert f"url: {fleet['url']}" in status.stdout and status.stdout.count(": running") == 8
    # A replica down for longer than the primary keeps WAL catches up from the archive.
    replica_conf = (fleet["dir"] / "pg" / "replica" / "postgresql.auto.conf").read_text()
    assert "restore_command = 'cp " in replica_conf and "/pg/archive/%f %p'" in replica_conf


def test_turns_plain_and_streamed_are_billed_once_through_nginx_and_pgbouncer(fleet):
    url = fleet["url"]
    staff, user = login(url, "support", "support-demo-password"), login(url, "bob", "bob-demo-password")
    _, _, raw = call(url, "GET", "/api/v1/auth/me", token=user)
    me = json.loads(raw)
    status, _, raw = call(
        url,
        "POST",
        f"/api/v1/admin/wallets/{me['id']}/grant",
        token=staff,
        body={"amount": "50", "reason": "fleet test"},
    )
    assert status == 200, raw
    status, _, raw = call(url, "POST", "/api/v1/sessions/", token=user, body={"title": "fleet"})
    assert status == 201, raw
    session = json.loads(raw)["id"]
    costs, errors = [], []

    def turns(n: int) -> None:
        # Many turns on both instances and many PgBouncer server connections: with prepared
        # statements they would fail there ("prepared statement ... does not exist").
        for k in range(n):
            status, _, raw = call(
                url, "POST", f"/api/v1/sessions/{session}/turns/", token=user, body={"content": f"hi {k}"}
            )
            (
                costs.append(Decimal(json.loads(raw)["usage"]["cost"]))
                if status == 201
                else errors.append((status, raw))
            )

    threads = [threading.Thread(target=turns, args=(10,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[:3]
    status, headers, raw = call(
        url,
        "POST",
        f"/api/v1/sessions/{session}/turns/",
        token=user,
        body={"content": "stream me"},
        headers={"Accept": "text/event-stream"},
    )
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream"), raw
    final = json.loads([line for line in raw.decode().splitlines() if line.startswith("data:")][-1][5:])
    costs.append(Decimal(final["usage"]["cost"]))
    _, _, raw = call(url, "GET", "/api/v1/users/me/wallet", token=user)
    balance_before_grant = Decimal(me["wallet"]["balance"])
    assert Decimal(json.loads(raw)["balance"]) == balance_before_grant + 50 - sum(costs)
    assert len(costs) == 41
    # The CSV export reads in chunks: no server-side cursor may outlive a transaction behind PgBouncer.
    status, _, raw = call(
        url, "GET", f"/api/v1/admin/transactions/export.csv?user_id={me['id']}", token=staff
    )
    assert status == 200, raw
    assert len(raw.decode().splitlines()) >= 43  # the header, the grant, the 41 debits
    check = manage(fleet, "check_ledger")
    assert check.returncode == 0, check.stdout + check.stderr
