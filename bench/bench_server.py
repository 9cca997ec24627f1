"""The server as deployed (`make serve`, default throttles and cache) against gunicorn, and a hot wallet.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/creditdesk_bench SECRET_KEY=bench
    .venv/bin/python bench/bench_server.py --rounds 5 --seconds 10      # the headline
    CACHE_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/bench_server.py ...   # with Redis

1. The headline: the server `make serve` runs (scripts/serve.sh, WEB_CONCURRENCY processes) with the
   settings a deployment keeps (throttles at their defaults, the default cache), and in the same run
   gunicorn (2 workers x 4 threads, WSGI) as the reference. For each: GET /api/v1/auth/me, a plain
   turn and a tool turn (the echo model searches, then answers: two model calls and a tool run),
   interleaved in `--rounds` rounds; requests/s and p50/p99 (the median over the rounds), the turn's
   p50 over auth/me's per round (median), and the deployed server's throughput over gunicorn's; and
   the machine's CPU a request, by process: the server's, PostgreSQL's and the load generator's.
   Turns spread over `--wallets` users so no one passes the default 60 turns a minute.
2. Secondary, labelled: the deployed server with every throttle off (`--throttles-off`).
3. With `--hot`: 16 concurrent clients on one wallet, through the server and, apart, straight through
   billing.services.charge (16 threads, a connection each); charges/s, p99, errors, and the final
   balance checked exactly against the costs answered (target >= 300/s, no error).
The load generator runs on the same 2 cores as the server: its CPU is part of every figure.
"""

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-not-secret")
os.environ.setdefault("DATABASE_POOL_MAX_SIZE", "0")  # the charge threads each keep a connection
os.environ.setdefault("LOG_LEVEL", "WARNING")  # the setup's grants and sessions log nothing here

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import close_old_connections, connection  # noqa: E402
from knox.models import AuthToken  # noqa: E402

from bench._stats import cpu_between, cpu_ticks, summary  # noqa: E402
from billing import services  # noqa: E402
from billing.models import CreditHold, ModelPrice, UsageDaily, UsageDayShard, Wallet  # noqa: E402
from billing.reconcile import check_ledger  # noqa: E402
from sessions_app.models import ChatSession, Message, Turn  # noqa: E402
from sessions_app.services import create_session  # noqa: E402

HOST, PORT = "127.0.0.1", 8765
HOT_CLIENTS = 16


def setup_wallets(count: int, *, prefix: str = "user", funds: str = "1000") -> list[tuple[str, int]]:
    """(token, session id) per user: each wallet funded by a staff grant, one chat session each."""
    staff = get_user_model().objects.get(username="benchstaff")
    users = list(get_user_model().objects.filter(username__startswith=prefix).order_by("id")[:count])
    out = []
    for user in users:
        services.grant(user=user, amount=funds, reason="bench funds", initiated_by=staff)
        _, key = AuthToken.objects.create(user=user)
        out.append((key, create_session(owner=user, title="bench").pk))
    return out


def request(method: str, path: str, token: str, body: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def load(
    name: str, clients: int, seconds: float, make_call, quiet: bool = False
) -> tuple[list[float], list, int]:
    """`clients` threads calling make_call(i) for `seconds`; returns latencies, results, errors."""
    latencies, results, errors = [], [], [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(k: int):
        i = k
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                ok, result = make_call(i)
            except Exception as exc:  # a failure is a figure here, not a crash of the bench
                ok, result = False, repr(exc)
            elapsed = time.perf_counter() - started
            with lock:
                if ok:
                    latencies.append(elapsed)
                    results.append(result)
                else:
                    errors[0] += 1
                    if errors[0] <= 3:
                        print(f"  {name} error: {result}", flush=True)
            i += clients
        close_old_connections()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    s = summary(latencies)
    if quiet:
        return latencies, results, errors[0]
    print(
        f"  {name:34s} {len(latencies) / wall:8.1f}/s  p50 {s.p50 * 1000:7.2f} ms  p99 {s.p99 * 1000:7.2f} ms"
        f"  ok {len(latencies)}  errors {errors[0]}  ({clients} clients, {wall:.0f}s)",
        flush=True,
    )
    return latencies, results, errors[0]


SERVERS = {
    # The server `make serve` runs, exactly (its processes: WEB_CONCURRENCY, default 2).
    "deployed": lambda: ["sh", str(ROOT / "scripts" / "serve.sh")],
    # The reference: WSGI on gunicorn's threaded workers, 2 processes x 4 threads.
    "gunicorn": lambda: [
        str(ROOT / ".venv/bin/gunicorn"),
        "config.wsgi",
        "--bind",
        f"{HOST}:{PORT}",
        "--workers",
        "2",
        "--threads",
        "4",
    ],
}
NO_THROTTLES = {name: "" for name in ("THROTTLE_TURN_RATE", "THROTTLE_STAFF_RATE", "THROTTLE_AUTH_RATE")}


def start_server(kind: str, *, throttles: bool = True) -> subprocess.Popen:
    """Start `kind` (SERVERS) on HOST:PORT with a deployment's settings (throttles on unless told)."""
    env = {
        **os.environ,
        "ALLOWED_HOSTS": HOST,
        "LOG_LEVEL": "WARNING",
        "LLM_PROVIDER": "echo",
        "DATABASE_POOL_MAX_SIZE": "4",
        "SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback
        "VENV_BIN": str(ROOT / ".venv/bin"),
        "HOST": HOST,
        "PORT": str(PORT),
        **({} if throttles else NO_THROTTLES),
    }
    server = subprocess.Popen(
        SERVERS[kind](),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    for _ in range(150):
        try:
            conn = http.client.HTTPConnection(HOST, PORT, timeout=1)
            conn.request("GET", "/api/v1/health")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    os.killpg(server.pid, signal.SIGKILL)
    raise SystemExit(f"{kind} did not start: " + server.stderr.read().decode()[-2000:])


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(30)


def vacuum_churned_tables() -> None:
    """VACUUM ANALYZE what earlier runs churned, so every run starts from the same state.

    Each turn updates its session, wallet, hold and rollup rows; on a server with autovacuum off (this
    machine's) their dead versions pile up run after run and slow every later run's lookups, which
    autovacuum would have cleaned in production.
    """
    tables = [
        m._meta.db_table for m in (Wallet, CreditHold, UsageDaily, UsageDayShard, ChatSession, Message, Turn)
    ]
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")


def balance_of(username: str) -> Decimal:
    return Wallet.objects.get(user__username=username).balance


def postmaster_pid() -> int:
    """The pid of the PostgreSQL server this process is connected to (on this machine): its backend's parent."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])


@dataclass
class Figures:
    """One endpoint's rounds on one server: requests/s and p50/p99 per round, CPU by process over all rounds."""

    rates: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    requests: int = 0
    cpu: Counter = field(default_factory=Counter)  # seconds, by CPU_ROLES' names

    def add(self, latencies: list[float], wall: float, cpu: Counter) -> None:
        stats = summary(latencies)
        self.rates.append(len(latencies) / wall)
        self.p50s.append(stats.p50)
        self.p99s.append(stats.p99)
        self.requests += len(latencies)
        self.cpu.update(cpu)

    def line(self, name: str) -> str:
        per_request = ", ".join(
            f"{role} {self.cpu[role] / max(self.requests, 1) * 1000:.2f}" for role in CPU_ROLES
        )
        return (
            f"  {name:24s} {median(self.rates):8.1f}/s  p50 {median(self.p50s) * 1000:7.2f} ms"
            f"  p99 {median(self.p99s) * 1000:7.2f} ms   (median of {len(self.rates)} rounds)\n"
            f"  {'':24s} CPU ms a request: {per_request}"
        )


# Where the machine's CPU goes, per request: the server's processes, PostgreSQL's (backends and
# background workers), and this process (the load generator's threads).
CPU_ROLES = ("server", "PostgreSQL", "load generator")


def measure(kind: str, calls: dict, *, rounds: int, seconds: float, clients: int, throttles: bool) -> dict:
    """Start `kind`, warm it, then `rounds` interleaved rounds of every call; its Figures by call name."""
    server = start_server(kind, throttles=throttles)
    figures = {name: Figures() for name in calls}
    roots = dict(zip(CPU_ROLES, (server.pid, postmaster_pid(), os.getpid()), strict=True))
    print(f"{kind}{'' if throttles else ' (throttles off)'}: load {os.getloadavg()[0]:.2f}", flush=True)
    try:
        load("warm-up", clients, 3, calls["GET auth/me"])
        for _ in range(rounds):
            for name, call in calls.items():
                before, started = cpu_ticks(roots), time.monotonic()
                latencies, _, errors = load(f"{kind}: {name}", clients, seconds, call, quiet=True)
                wall = time.monotonic() - started
                figures[name].add(latencies, wall, cpu_between(before, cpu_ticks(roots)))
                if errors:
                    print(f"    {name}: {errors} errors", flush=True)
    finally:
        stop_server(server)
    for name, figure in figures.items():
        print(figure.line(name))
    ratios = [t / m for m, t in zip(figures["GET auth/me"].p50s, figures["POST turn"].p50s, strict=True)]
    print(f"  turn / auth/me (p50, median of rounds): {median(ratios):.2f}x (target <= 2.0x)", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="per endpoint and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--wallets", type=int, default=600)
    parser.add_argument("--servers", default="deployed,gunicorn", help="of: " + ", ".join(SERVERS))
    parser.add_argument(
        "--throttles-off", action="store_true", help="also the deployed server, throttles off"
    )
    parser.add_argument(
        "--hot", action="store_true", help="also the hot wallet, through the server and charge()"
    )
    parser.add_argument("--hot-only", action="store_true", help="only the hot wallet through charge()")
    args = parser.parse_args()
    hot_user = get_user_model().objects.get(username="heavy")
    if args.hot_only:
        hot_charges(hot_user, args.seconds)
        return
    wallets = setup_wallets(args.wallets)
    vacuum_churned_tables()
    print(
        f"{args.clients} client threads, {len(wallets)} wallets, cache {settings.CACHES['default']['BACKEND']}, "
        f"{args.rounds} rounds of {args.seconds:.0f} s per endpoint",
        flush=True,
    )

    def me(i):
        status, _ = request("GET", "/api/v1/auth/me", wallets[i % len(wallets)][0])
        return status == 200, None

    def turn_with(content):
        def turn(i):
            token, session_id = wallets[i % len(wallets)]
            status, data = request(
                "POST", f"/api/v1/sessions/{session_id}/turns/", token, {"content": content}
            )
            return status == 201, (
                json.loads(data)["usage"]["cost"] if status == 201 else f"{status} {data[:200]}"
            )

        return turn

    calls = {
        "GET auth/me": me,
        "POST turn": turn_with("hello"),
        "POST tool turn": turn_with("search for hello"),
    }
    measured = {
        kind: measure(
            kind, calls, rounds=args.rounds, seconds=args.seconds, clients=args.clients, throttles=True
        )
        for kind in args.servers.split(",")
    }
    if {"deployed", "gunicorn"} <= measured.keys():
        for name in calls:
            deployed, reference = measured["deployed"][name], measured["gunicorn"][name]
            ratio = median(deployed.rates) / median(reference.rates)
            print(f"  deployed / gunicorn throughput, {name}: {ratio:.2f}x (target >= 0.9x)")
    if args.throttles_off:
        measure(
            "deployed", calls, rounds=args.rounds, seconds=args.seconds, clients=args.clients, throttles=False
        )
    if args.hot:
        hot_through_server(hot_user, args.seconds)
        hot_charges(hot_user, args.seconds)


def hot_through_server(hot_user, seconds: float) -> None:
    """16 clients, one wallet (a session each), through the deployed server, throttles off."""
    staff = get_user_model().objects.get(username="benchstaff")
    services.grant(user=hot_user, amount="10000", reason="bench funds", initiated_by=staff)
    hot_token = AuthToken.objects.create(user=hot_user)[1]
    hot_sessions = [create_session(owner=hot_user, title="hot").pk for _ in range(HOT_CLIENTS)]
    server = start_server("deployed", throttles=False)
    try:
        before = balance_of("heavy")

        def hot_turn(i):
            path = f"/api/v1/sessions/{hot_sessions[i % HOT_CLIENTS]}/turns/"
            status, data = request("POST", path, hot_token, {"content": "hot"})
            return status == 201, (
                Decimal(json.loads(data)["usage"]["cost"]) if status == 201 else data[:200]
            )

        _, costs, errors = load("hot wallet, turns via server", HOT_CLIENTS, seconds, hot_turn)
        exact = balance_of("heavy") == before - sum(costs, Decimal(0))
        print(f"    final balance exact: {exact}; errors {errors}")
    finally:
        stop_server(server)


def hot_charges(hot_user, seconds: float) -> None:
    """The hot wallet straight through the service: the wallet row is the only contention."""
    price = ModelPrice.objects.get(model="echo-1")
    before = balance_of("heavy")

    def hot_charge(i):
        result = services.charge(
            user=hot_user, price=price, provider="echo", input_tokens=120, output_tokens=80
        )
        return True, result.event.cost

    print(f"hot wallet: load {os.getloadavg()[0]:.2f}", flush=True)
    hot_lat, costs, errors = load("hot wallet, charge() x16 threads", HOT_CLIENTS, seconds, hot_charge)
    rate = len(hot_lat) / seconds
    exact = balance_of("heavy") == before - sum(costs, Decimal(0))
    ledger_ok = check_ledger(user_id=hot_user.pk).ok
    print(
        f"    final balance exact: {exact}; check_ledger ok: {ledger_ok}; errors {errors}; "
        f"target >= 300/s, no error -> {'PASS' if rate >= 300 and not errors and exact and ledger_ok else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
