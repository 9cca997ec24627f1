"""Load through the real server: gunicorn on PostgreSQL, many concurrent clients, then the ledger's invariants.

By hand (the full size; a scratch database is created, migrated and seeded):
    .venv/bin/python bench/load.py --full
    .venv/bin/python bench/load.py --requests 5000 --concurrency 32 --workers 4
CI runs a reduced size from tests/reliability/test_load.py against the test database.

The clients send a mix of metered turns (on many users and a few hot wallets), grants with and
without Idempotency-Key (keys shared across clients so replays race), the user's ledger, the staff
wallet, the usage summary and the CSV export. Afterwards: check_ledger is clean, every 201 turn has
exactly one debit, every grant key has exactly one row, every figure of the usage summary equals a
recount from the event rows, and no hold is left open. Every loop is bounded in count and in time;
the server and the clients talk on 127.0.0.1 only.
"""

import argparse
import http.client
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/load.py`
    sys.path.insert(0, str(ROOT))

from bench._db import maintenance_dsn  # noqa: E402 - after the path fix above

HOST = "127.0.0.1"
SERVER_START_SECONDS = 60
REQUEST_TIMEOUT_SECONDS = 30

CI_SIZE = {"requests": 1500, "concurrency": 16, "workers": 3, "users": 40, "hot": 3}
FULL_SIZE = {"requests": 20000, "concurrency": 64, "workers": 6, "users": 400, "hot": 5}


# --- the server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: the master's children, read from /proc (no broad name matching)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        """Stop the master and its workers: the whole process group we started, TERM then KILL."""
        if self.process.poll() is not None:
            return
        pgid = os.getpgid(self.process.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=15)


def start_server(
    *, database_url: str, workers: int, env: dict | None = None, log_dir: Path | None = None
) -> Server:
    """gunicorn (sync workers) on a free loopback port, in its own process group; waits for /health."""
    port = free_port()
    log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    log_path = log_dir / f"creditdesk-gunicorn-{port}.log"
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "reliability-run-not-a-secret",
        "DEBUG": "false",
        "ALLOWED_HOSTS": HOST,
        "DATABASE_POOL_MAX_SIZE": "0",
        "LOG_LEVEL": "WARNING",
        # Plain HTTP on loopback, and load is not abuse: no TLS redirect, no throttles.
        "SECURE_SSL_REDIRECT": "false",
        "THROTTLE_TURN_RATE": "",
        "THROTTLE_STAFF_RATE": "",
        "THROTTLE_AUTH_RATE": "",
        **(env or {}),
    }
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "config.wsgi",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(workers),
        "--timeout",
        "60",
        "--graceful-timeout",
        "5",
    ]
    log = log_path.open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own gunicorn, fixed arguments
        command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = Server(process=process, port=port, log_path=log_path)
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log_path}")
        try:
            if request(server.base_url, "GET", "/api/v1/health")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(
        f"gunicorn did not answer /api/v1/health within {SERVER_START_SECONDS}s; see {log_path}"
    )


def request(base_url: str, method: str, path: str, *, token=None, body=None, headers=None, conn=None):
    """One HTTP request; returns (status, headers, parsed JSON or raw bytes). Loopback only."""
    parsed = urlparse(base_url)
    if parsed.hostname != HOST:
        raise ValueError(f"refusing to send traffic anywhere but {HOST}: {base_url}")
    own = conn is None
    conn = conn or http.client.HTTPConnection(HOST, parsed.port, timeout=REQUEST_TIMEOUT_SECONDS)
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Token {token}"
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=payload, headers=sent)
        response = conn.getresponse()
        raw = response.read()
        content_type = response.getheader("Content-Type", "")
        data = json.loads(raw) if raw and content_type.startswith("application/json") else raw
        return response.status, dict(response.getheaders()), data
    finally:
        if own:
            conn.close()


# --- the world the clients act in --------------------------------------------------------------


@dataclass
class Account:
    user_id: int
    token: str
    sessions: list[int]


@dataclass
class World:
    staff_token: str
    accounts: list[Account]
    hot: list[Account]


def seed_world(*, users: int, hot: int, starting: Decimal = Decimal("50")) -> World:
    """Users with tokens, a session each (hot wallets get several), a grant each; through the services."""
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    from billing import services
    from billing.models import ModelPrice
    from sessions_app.services import create_session

    ModelPrice.objects.get_or_create(
        model="echo-1",
        defaults={"input_price_per_1k": Decimal("0.5"), "output_price_per_1k": Decimal("1.5")},
    )
    User = get_user_model()  # noqa: N806 - a class
    stamp = datetime.now(UTC).strftime("%H%M%S%f")
    staff = User.objects.create_user(f"rel-staff-{stamp}", is_staff=True)
    accounts = []
    for n in range(users):
        user = User.objects.create_user(f"rel-{stamp}-{n}")
        services.open_wallet(user=user)
        services.grant(user=user, amount=starting, reason="reliability seed", initiated_by=staff)
        sessions = [create_session(owner=user, title=f"s{k}").pk for k in range(4 if n < hot else 1)]
        accounts.append(Account(user.pk, AuthToken.objects.create(user=user)[1], sessions))
    return World(AuthToken.objects.create(user=staff)[1], accounts, accounts[:hot])


# --- the clients -------------------------------------------------------------------------------


@dataclass
class Result:
    statuses: Counter = field(default_factory=Counter)  # (operation, status) -> count
    connection_errors: Counter = field(default_factory=Counter)  # operation -> count
    turns: list[dict] = field(default_factory=list)  # 201 bodies
    failed_turns: list[tuple[int, int]] = field(default_factory=list)  # (user_id, status) of 502/504
    grants: list[dict] = field(default_factory=list)  # every grant answer with its key and body
    requests: int = 0
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_status(self) -> Counter:
        totals = Counter()
        for (_, status), n in self.statuses.items():
            totals[status] += n
        return totals

    def errors(self) -> Counter:
        """Non-2xx answers by status, plus connection errors as status 0."""
        totals = Counter({status: n for status, n in self.by_status().items() if status >= 300})
        if self.connection_errors:
            totals[0] = sum(self.connection_errors.values())
        return totals


# (operation, weight). Turns dominate: they are what moves money.
MIX = [
    ("turn", 40),
    ("turn_hot", 15),
    ("grant", 5),
    ("grant_key", 8),
    ("grant_conflict", 1),
    ("my_wallet", 6),
    ("my_transactions", 6),
    ("sessions", 4),
    ("turns_list", 3),
    ("staff_wallet", 4),
    ("usage_summary", 4),
    ("usage_day", 2),
    ("export", 2),
]
KEYS_PER_HOT_WALLET = 6


class Driver:
    """Threads that each keep one connection and draw operations from MIX until the count or time runs out."""

    def __init__(self, base_url: str, world: World, *, seed: int = 6, fault_markers: list | None = None):
        self.base_url = base_url
        self.world = world
        self.seed = seed
        # Optional provider faults appended to turn messages, e.g. ["", "[fault:error]"] (bench/faults.py).
        self.fault_markers = fault_markers or [""]
        self.result = Result()
        self._counter = itertools.count()
        operations, weights = zip(*MIX, strict=True)
        self._operations, self._weights = list(operations), list(weights)

    def run(self, *, total: int, concurrency: int, max_seconds: float) -> Result:
        deadline = time.monotonic() + max_seconds
        started = time.monotonic()
        threads = [
            threading.Thread(target=self._client, args=(n, total, deadline), name=f"client-{n}")
            for n in range(concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max_seconds + REQUEST_TIMEOUT_SECONDS + 5)
        self.result.seconds = time.monotonic() - started
        return self.result

    def _client(self, n: int, total: int, deadline: float) -> None:
        rng = random.Random(self.seed * 1000 + n)
        conn = None
        while time.monotonic() < deadline:
            if next(self._counter) >= total:
                break
            operation = rng.choices(self._operations, self._weights)[0]
            conn = conn or http.client.HTTPConnection(
                HOST, urlparse(self.base_url).port, timeout=REQUEST_TIMEOUT_SECONDS
            )
            try:
                self._do(operation, rng, conn)
            except (OSError, http.client.HTTPException):
                # A killed worker or a dropped connection: count it, reconnect, go on.
                conn.close()
                conn = None
                with self.result.lock:
                    self.result.connection_errors[operation] += 1
                    self.result.requests += 1
        if conn is not None:
            conn.close()

    def _record(self, operation: str, status: int) -> None:
        with self.result.lock:
            self.result.statuses[(operation, status)] += 1
            self.result.requests += 1

    def _do(self, operation: str, rng: random.Random, conn) -> None:
        world, call = self.world, self._call
        if operation in ("turn", "turn_hot"):
            account = rng.choice(world.hot if operation == "turn_hot" else world.accounts)
            session = rng.choice(account.sessions)
            marker = rng.choice(self.fault_markers)
            status, _, body = call(
                conn,
                operation,
                "POST",
                f"/api/v1/sessions/{session}/turns/",
                account.token,
                {"content": f"hello {rng.randrange(10**6)} {marker}".strip()},
            )
            with self.result.lock:
                if status == 201:
                    self.result.turns.append(body)
                elif status in (502, 504):
                    self.result.failed_turns.append((account.user_id, status))
        elif operation == "grant":
            account = rng.choice(world.accounts)
            amount = f"{rng.randrange(1, 500)}.{rng.randrange(10**6):06d}"
            self._grant(conn, operation, account, amount, "load grant", None)
        elif operation in ("grant_key", "grant_conflict"):
            # Keys shared by all clients with one fixed body: concurrent first uses and replays race.
            account = rng.choice(world.hot)
            k = rng.randrange(KEYS_PER_HOT_WALLET)
            amount = f"{k + 1}.250000"
            if operation == "grant_conflict":
                amount = f"{k + 100}.000000"  # same key, another amount: 409 once the key is taken
            self._grant(conn, operation, account, amount, f"keyed grant {k}", f"rel-{account.user_id}-{k}")
        elif operation == "my_wallet":
            call(conn, operation, "GET", "/api/v1/users/me/wallet", rng.choice(world.accounts).token)
        elif operation == "my_transactions":
            call(
                conn,
                operation,
                "GET",
                "/api/v1/users/me/transactions?page_size=20",
                rng.choice(world.hot).token,
            )
        elif operation == "sessions":
            call(conn, operation, "GET", "/api/v1/sessions/", rng.choice(world.accounts).token)
        elif operation == "turns_list":
            account = rng.choice(world.hot)
            call(
                conn,
                operation,
                "GET",
                f"/api/v1/sessions/{rng.choice(account.sessions)}/turns/",
                account.token,
            )
        elif operation == "staff_wallet":
            call(
                conn,
                operation,
                "GET",
                f"/api/v1/admin/wallets/{rng.choice(world.hot).user_id}",
                world.staff_token,
            )
        elif operation == "usage_summary":
            call(conn, operation, "GET", "/api/v1/admin/usage/summary", world.staff_token)
        elif operation == "usage_day":
            call(conn, operation, "GET", "/api/v1/admin/usage/summary?bucket=day", world.staff_token)
        elif operation == "export":
            user_id = rng.choice(world.accounts).user_id
            call(
                conn,
                operation,
                "GET",
                f"/api/v1/admin/transactions/export.csv?user_id={user_id}",
                world.staff_token,
            )

    def _grant(self, conn, operation, account, amount, reason, key) -> None:
        headers = {"Idempotency-Key": key} if key else None
        status, answer_headers, body = self._call(
            conn,
            operation,
            "POST",
            f"/api/v1/admin/wallets/{account.user_id}/grant",
            self.world.staff_token,
            {"amount": amount, "reason": reason},
            headers,
        )
        with self.result.lock:
            self.result.grants.append(
                {
                    "user_id": account.user_id,
                    "key": key,
                    "amount": amount,
                    "reason": reason,
                    "status": status,
                    "transaction_id": body["transaction"]["id"] if status == 200 else None,
                    "replayed": answer_headers.get("Idempotent-Replayed") == "true",
                }
            )

    def _call(self, conn, operation, method, path, token, body=None, headers=None):
        status, answer_headers, data = request(
            self.base_url, method, path, token=token, body=body, headers=headers, conn=conn
        )
        self._record(operation, status)
        return status, answer_headers, data


# --- the invariants ----------------------------------------------------------------------------


class InvariantBroken(AssertionError):
    pass


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvariantBroken(message)


def check_ledger_clean() -> str:
    from billing.reconcile import check_ledger

    result = check_ledger()
    _require(result.ok, f"check_ledger: {result.discrepancies[:5]}")
    return f"check_ledger clean over {result.wallets} wallets and {result.rows} rows (balance, held, chain)"


def check_debits_have_events() -> str:
    from django.db.models import Count

    from billing.models import CreditTransaction, LLMCallEvent

    orphan = CreditTransaction.objects.filter(kind="debit", llm_call__isnull=True).count()
    _require(orphan == 0, f"{orphan} debits without their LLM call event")
    doubled = (
        CreditTransaction.objects.filter(kind="debit")
        .values("llm_call")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    _require(doubled == 0, f"{doubled} LLM call events with more than one debit")
    unpaid = LLMCallEvent.objects.filter(status="ok", cost__gt=0, transactions__isnull=True).count()
    _require(unpaid == 0, f"{unpaid} successful priced calls without a debit")
    failed_paid = CreditTransaction.objects.filter(llm_call__status="error").count()
    _require(failed_paid == 0, f"{failed_paid} debits for failed provider calls")
    return "every debit has its event; every priced successful call exactly one debit; failed calls none"


def check_turns(result: Result) -> str:
    from billing.models import CreditTransaction
    from sessions_app.models import Turn

    ids = [body["id"] for body in result.turns]
    _require(len(ids) == len(set(ids)), "two 201 answers named the same turn")
    turns = {t.pk: t for t in Turn.objects.filter(pk__in=ids).select_related("llm_call")}
    _require(len(turns) == len(ids), f"{len(ids) - len(turns)} turns answered 201 but not stored")
    debits = Counter(
        CreditTransaction.objects.filter(
            kind="debit", llm_call__in=[t.llm_call_id for t in turns.values()]
        ).values_list("llm_call_id", flat=True)
    )
    amounts = dict(
        CreditTransaction.objects.filter(
            kind="debit", llm_call__in=[t.llm_call_id for t in turns.values()]
        ).values_list("llm_call_id", "amount")
    )
    for body in result.turns:
        turn = turns[body["id"]]
        _require(debits[turn.llm_call_id] == 1, f"turn {turn.pk}: {debits[turn.llm_call_id]} debits")
        _require(
            -amounts[turn.llm_call_id] == Decimal(body["usage"]["cost"]),
            f"turn {turn.pk}: debit {amounts[turn.llm_call_id]} != usage.cost {body['usage']['cost']}",
        )
    return f"each of the {len(ids)} turns answered 201 has exactly one debit, equal to its usage.cost"


def check_failed_turns(result: Result) -> str:
    from billing.models import LLMCallEvent

    failed = LLMCallEvent.objects.filter(status="error").count()
    _require(
        failed >= len(result.failed_turns),
        f"{len(result.failed_turns)} turns answered 502/504 but only {failed} failed call events",
    )
    return f"each of the {len(result.failed_turns)} turns answered 502/504 left a failed event and no debit"


def check_grants(result: Result) -> str:
    from billing.models import CreditTransaction

    keyed = defaultdict(list)
    for grant in result.grants:
        if grant["key"]:
            keyed[(grant["user_id"], grant["key"])].append(grant)
    replays = 0
    for (user_id, key), answers in keyed.items():
        rows = list(CreditTransaction.objects.filter(wallet__user_id=user_id, idempotency_key=key))
        ok = [a for a in answers if a["status"] == 200]
        _require(len(rows) == (1 if ok else 0), f"key {key}: {len(rows)} rows for {len(ok)} accepted grants")
        _require(
            {a["transaction_id"] for a in ok} <= {rows[0].pk} if rows else not ok,
            f"key {key}: answers named different transactions",
        )
        _require(
            all(a["status"] in (200, 409) for a in answers),
            f"key {key}: statuses {[a['status'] for a in answers]}",
        )
        conflicts_ok = [a for a in ok if Decimal(a["amount"]) != rows[0].amount] if rows else []
        _require(not conflicts_ok, f"key {key}: a different amount was answered 200")
        replays += sum(1 for a in ok if a["replayed"])
    plain = [g for g in result.grants if not g["key"] and g["status"] == 200]
    stored = CreditTransaction.objects.filter(pk__in=[g["transaction_id"] for g in plain]).count()
    _require(stored == len(plain), f"{len(plain)} plain grants answered 200, {stored} rows")
    return (
        f"{len(keyed)} idempotency keys ({sum(len(a) for a in keyed.values())} requests, {replays} replays) "
        f"each wrote exactly one row; {len(plain)} plain grants one row each"
    )


def check_usage_summary(base_url: str, staff_token: str) -> str:
    """Every figure of the summary (totals and day rows) equals a recount of the event rows."""
    from billing.models import LLMCallEvent
    from reporting.selectors import default_range

    status, _, summary = request(base_url, "GET", "/api/v1/admin/usage/summary?bucket=day", token=staff_token)
    _require(status == 200, f"usage summary answered {status}")
    start, end = default_range()
    days = defaultdict(
        lambda: {
            "calls": 0,
            "failed_calls": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost": Decimal(0),
            "users": set(),
            "shadow_refusals": 0,
        }
    )
    for created, user_id, ok, tin, tout, cost, shadow in LLMCallEvent.objects.values_list(
        "created_at", "user_id", "status", "input_tokens", "output_tokens", "cost", "shadow_refusal"
    ).iterator():
        day = created.astimezone(UTC).date()  # REPORT_TIME_ZONE is UTC in these runs
        if not start <= day <= end:
            continue
        row = days[day]
        if ok == "ok":
            row["calls"] += 1
            row["input_tokens"] += tin
            row["output_tokens"] += tout
            row["cost"] += cost
            row["users"].add(user_id)
        else:
            row["failed_calls"] += 1
        row["shadow_refusals"] += int(shadow)
    totals = {
        "total_calls": sum(r["calls"] for r in days.values()),
        "failed_calls": sum(r["failed_calls"] for r in days.values()),
        "total_input_tokens": sum(r["input_tokens"] for r in days.values()),
        "total_output_tokens": sum(r["output_tokens"] for r in days.values()),
        "total_cost": sum((r["cost"] for r in days.values()), Decimal(0)),
        "unique_users": len(set().union(*(r["users"] for r in days.values()))) if days else 0,
        "shadow_refusals": sum(r["shadow_refusals"] for r in days.values()),
    }
    for name, expected in totals.items():
        got = Decimal(summary[name]) if name == "total_cost" else summary[name]
        _require(got == expected, f"usage summary {name} = {summary[name]}, recount {expected}")
    _require(len(summary["daily"]) == len(days), f"{len(summary['daily'])} day rows, recount {len(days)}")
    for row in summary["daily"]:
        recount = days[datetime.fromisoformat(row["date"]).date()]
        for name in ("calls", "failed_calls", "input_tokens", "output_tokens", "shadow_refusals"):
            _require(
                row[name] == recount[name], f"{row['date']} {name} = {row[name]}, recount {recount[name]}"
            )
        _require(
            Decimal(row["cost"]) == recount["cost"], f"{row['date']} cost {row['cost']} != {recount['cost']}"
        )
        _require(row["unique_users"] == len(recount["users"]), f"{row['date']} unique_users differs")
    return f"usage summary: {len(totals)} totals and {len(days)} day rows x 7 figures equal a recount of the events"


def check_no_open_holds() -> str:
    from billing.models import CreditHold, Wallet

    open_holds = CreditHold.objects.filter(status=CreditHold.Status.HELD).count()
    _require(open_holds == 0, f"{open_holds} holds still open after every request finished")
    _require(not Wallet.objects.exclude(held=0).exists(), "a wallet still holds credits")
    return "no hold left open and every wallet's held is 0"


def check_all(result: Result, base_url: str, staff_token: str) -> list[str]:
    return [
        check_ledger_clean(),
        check_debits_have_events(),
        check_turns(result),
        check_failed_turns(result),
        check_grants(result),
        check_usage_summary(base_url, staff_token),
        check_no_open_holds(),
    ]


def report(title: str, result: Result, concurrency: int, invariants: list[str]) -> str:
    lines = [
        f"== {title}",
        f"requests sent: {result.requests} in {result.seconds:.1f}s with {concurrency} concurrent clients",
        "answers by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(result.by_status().items())),
        "errors by status: "
        + (", ".join(f"{s or 'connection'}: {n}" for s, n in sorted(result.errors().items())) or "none"),
        f"turns 201: {len(result.turns)}; grants: {len(result.grants)}",
        "invariants held:",
        *(f"  - {line}" for line in invariants),
    ]
    return "\n".join(lines)


# --- by hand -----------------------------------------------------------------------------------


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "reliability-run-not-a-secret")
    os.environ.setdefault("DATABASE_POOL_MAX_SIZE", "0")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def fresh_database(admin_url: str, name: str) -> str:
    """Drop and create the scratch database `name` on the server of admin_url; return its URL."""
    import psycopg

    parsed = urlparse(admin_url)
    _require(parsed.hostname in (HOST, "localhost"), "the reliability run uses a local PostgreSQL only")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return parsed._replace(path=f"/{name}").geturl()


def prepare(args) -> str:
    url = fresh_database(args.postgres, args.database)
    subprocess.run(  # noqa: S603 - our manage.py
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, "SECRET_KEY": "x"},
        check=True,
    )
    setup_django(url)
    return url


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Load creditdesk through gunicorn and check the ledger.")
    parser.add_argument("--full", action="store_true", help=f"the full size: {FULL_SIZE}")
    parser.add_argument("--requests", type=int)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--users", type=int)
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument(
        "--postgres",
        default=maintenance_dsn(),
    )
    parser.add_argument(
        "--database", default="creditdesk_reliability", help="scratch database (dropped first)"
    )
    args = parser.parse_args(argv)
    size = dict(FULL_SIZE if args.full else CI_SIZE)
    for name in ("requests", "concurrency", "workers", "users"):
        if getattr(args, name):
            size[name] = getattr(args, name)
    url = prepare(args)
    world = seed_world(users=size["users"], hot=size["hot"])
    server = start_server(database_url=url, workers=size["workers"])
    try:
        result = Driver(server.base_url, world).run(
            total=size["requests"], concurrency=size["concurrency"], max_seconds=args.max_seconds
        )
        invariants = check_all(result, server.base_url, world.staff_token)
        _require(not any(s >= 500 for s in result.by_status()), f"server errors: {result.errors()}")
    finally:
        server.stop()
    print(
        report(
            f"load: {size['workers']} gunicorn workers, {size['users']} users, {size['hot']} hot wallets",
            result,
            size["concurrency"],
            invariants,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
