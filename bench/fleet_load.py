"""A mixed load through the fleet's nginx (scripts/fleet.sh up), with drills, then the ledger's invariants.

    scripts/fleet.sh up
    export FLEET_EXTRA_ENV="THROTTLE_TURN_RATE= THROTTLE_STAFF_RATE= THROTTLE_AUTH_RATE= THROTTLE_GATEWAY_RATE="
    for p in app1 app2 worker1 worker2; do scripts/fleet.sh restart $p; done   # load is not abuse
    unset FLEET_EXTRA_ENV   # a drill's restart keeps each process's own (fleet.sh)
    .venv/bin/python bench/fleet_load.py --seconds 60                     # load + every drill
    .venv/bin/python bench/fleet_load.py --seconds 60 --drills none       # the load alone
    .venv/bin/python bench/fleet_load.py --measure                         # ratio, throughput 1 vs 2 apps

The load (bench/load.py's mix: turns on many users and on hot wallets, grants with and without
Idempotency-Key, the user's ledger and wallet, the staff wallet, usage summaries, the CSV export; plus
streamed turns, gateway calls with API keys, plain and streamed, and the user's own usage) runs for
--seconds (and at most --max-requests), counting answers by operation and status, each with its time
so that errors are told apart: inside a drill's window, or not (those must be none).

Drills during the load (--drills, comma-separated, default all):
  kill-app           SIGKILL app1's process group; nginx routes around it; app1 restarted 10 s later
  restart-pgbouncer  fleet.sh restart pgbouncer (stop, start) while requests go through it
  kill-worker        the webhook receiver run here holds a delivery; the worker sending it (found by its
                     socket) is SIGKILLed; the other worker delivers it again (acknowledged once)
  stop-replica       fleet.sh stop replica; the staff usage reports keep answering (from the primary)
After the load: check_ledger clean, every debit with its call event and one debit per priced call,
each 201 turn (plain or streamed) debited once and exactly its usage.cost, keyed grants once, no hold
open past its TTL at any time (polled every 2 s) and none open at the end, every wallet event's
webhook acknowledged exactly once. (No provider faults are injected here: a 502 is nginx's, for a
request in flight on a killed instance, so load.py's failed-turn check does not apply.) Exit status 1 when any of these fails. The clients run on the same
2 cores as the fleet: their CPU is part of every figure.
"""

import argparse
import http.client
import http.server
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from statistics import median
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/fleet_load.py`
    sys.path.insert(0, str(ROOT))

from bench import load as base  # noqa: E402 - after the path fix above
from bench._stats import cpu_between, cpu_ticks  # noqa: E402

FLEET = ROOT / "scripts" / "fleet.sh"
DRILLS = ("kill-app", "restart-pgbouncer", "kill-worker", "stop-replica")
DRILL_GRACE_SECONDS = 3  # answers this long after a drill ends still count as the drill's own
RELEASE_JOB_SECONDS = 60  # billing.release_expired_holds runs every minute


def log(message: str) -> None:
    """Progress, on a terminal only (the report at the end says what happened)."""
    if sys.stderr.isatty():
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the fleet ---------------------------------------------------------------------------------


def fleet_env() -> dict:
    """The app's settings as fleet.sh gives them (its `env` command)."""
    out = subprocess.run(["bash", str(FLEET), "env"], capture_output=True, text=True, check=True)  # noqa: S603
    env = {}
    for line in out.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    return env


def fleet(*args: str) -> None:
    subprocess.run(["bash", str(FLEET), *args], check=True, capture_output=True, text=True)  # noqa: S603


def fleet_pid(name: str) -> int:
    run = Path(os.environ.get("FLEET_DIR", ROOT / ".fleet")) / "run"
    return int((run / f"{name}.pid").read_text().split()[0])


def setup_django(env: dict) -> None:
    """Django on the fleet's primary, directly (seeding and checks never go through the load's path)."""
    os.environ.update(env)
    os.environ["DATABASE_URL"] = env["WORKER_DATABASE_URL"]
    os.environ["DATABASE_POOL_MAX_SIZE"] = "0"
    os.environ["DATABASE_SERVER_PREPARE"] = "true"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()


# --- the webhook receiver -------------------------------------------------------------------------


@dataclass
class Receiver:
    """Counts webhook deliveries by event id; when armed, holds the next one until told to answer."""

    port: int
    worker_pids: dict  # name -> pid, to find which worker sent a delivery (by its socket)
    attempts: list = field(default_factory=list)  # dicts: event, type, worker, acknowledged
    armed: threading.Event = field(default_factory=threading.Event)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    held_attempt: dict | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                attempt = {
                    "event": body["id"],
                    "type": body["type"],
                    "worker": receiver.sender(self.client_address[1]),
                    "acknowledged": False,
                }
                with receiver.lock:
                    receiver.attempts.append(attempt)
                    hold = receiver.armed.is_set() and receiver.held_attempt is None
                    if hold:
                        receiver.held_attempt = attempt
                if hold:
                    receiver.held.set()
                    receiver.release.wait(timeout=60)
                    attempt["answered_after_kill"] = True
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self.wfile.flush()
                except OSError:
                    return
                # An answer counts as acknowledged only when the worker that asked is still alive.
                pid = receiver.worker_pids.get(attempt["worker"])
                attempt["acknowledged"] = not hold and (pid is None or Path(f"/proc/{pid}").exists())

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()

    def sender(self, peer_port: int) -> str | None:
        """The worker (by fleet name) whose socket has local port `peer_port`: /proc/net/tcp, then its fds."""
        inode = None
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == peer_port:
                inode = fields[9]
                break
        if inode is None:
            return None
        for name, pid in self.worker_pids.items():
            try:
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return name
            except OSError:
                continue
        return None


# --- the load ----------------------------------------------------------------------------------


FLEET_MIX = [
    *base.MIX,
    ("stream_turn", 12),
    ("gateway", 12),
    ("gateway_stream", 4),
    ("my_usage", 3),
]


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    events = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines and lines["data"] != "[DONE]":
            events.append((lines.get("event", "message"), json.loads(lines["data"])))
    return events


class FleetDriver(base.Driver):
    """bench/load.py's driver plus streams, the gateway and the user's usage; every answer timed."""

    def __init__(self, base_url: str, world, keys: list[str]):
        super().__init__(base_url, world, seed=25)
        self.keys = keys
        operations, weights = zip(*FLEET_MIX, strict=True)
        self._operations, self._weights = list(operations), list(weights)
        self.timeline: list[tuple[float, str, int]] = []  # (monotonic, operation, status; 0 = connection)
        self.stream_errors = Counter()

    def _record(self, operation: str, status: int) -> None:
        super()._record(operation, status)
        with self.result.lock:
            self.timeline.append((time.monotonic(), operation, status))

    def _do(self, operation: str, rng: random.Random, conn) -> None:
        try:
            if operation == "stream_turn":
                self._stream_turn(rng, conn)
            elif operation in ("gateway", "gateway_stream"):
                self._gateway(operation, rng, conn)
            elif operation == "my_usage":
                self._call(
                    conn, operation, "GET", "/api/v1/users/me/usage", rng.choice(self.world.accounts).token
                )
            else:
                super()._do(operation, rng, conn)
        except (OSError, http.client.HTTPException):
            with self.result.lock:
                self.timeline.append((time.monotonic(), operation, 0))
            raise

    def _stream_turn(self, rng, conn) -> None:
        account = rng.choice(self.world.accounts)
        status, _, raw = self._call(
            conn,
            "stream_turn",
            "POST",
            f"/api/v1/sessions/{rng.choice(account.sessions)}/turns/",
            account.token,
            {"content": f"stream {rng.randrange(10**6)}"},
            {"Accept": "text/event-stream"},
        )
        if status != 200:
            return
        events = sse_events(raw)
        last, data = events[-1] if events else ("none", {})
        with self.result.lock:
            if last == "done":
                self.result.turns.append(data)
            else:  # a stream that failed after its 200: timed like an error answer
                self.stream_errors[data.get("code", last)] += 1
                self.timeline.append((time.monotonic(), f"stream_turn ({data.get('code', last)})", 599))

    def _gateway(self, operation: str, rng, conn) -> None:
        body = {"model": "echo-1", "messages": [{"role": "user", "content": f"gw {rng.randrange(10**6)}"}]}
        if operation == "gateway_stream":
            body["stream"] = True
        status, _, raw = self._call(
            conn, operation, "POST", "/v1/chat/completions", None, body,
            {"Authorization": f"Bearer {rng.choice(self.keys)}"},
        )  # fmt: skip
        if status == 200 and operation == "gateway_stream" and b"data: [DONE]" not in raw:
            with self.result.lock:
                self.stream_errors["gateway stream without [DONE]"] += 1
                self.timeline.append((time.monotonic(), "gateway_stream (no [DONE])", 599))


# --- drills ------------------------------------------------------------------------------------


@dataclass
class Drill:
    name: str
    started: float = 0.0
    ended: float = 0.0
    notes: list[str] = field(default_factory=list)


def kill_app(drill: Drill) -> None:
    pid = fleet_pid("app1")
    os.killpg(pid, signal.SIGKILL)
    drill.notes.append(f"SIGKILL to app1's process group (pid {pid})")
    time.sleep(10)
    drill.ended = time.monotonic()
    fleet("restart", "app1")
    drill.notes.append("app1 restarted 10 s later (fleet.sh restart app1)")


def restart_pgbouncer(drill: Drill) -> None:
    started = time.monotonic()
    fleet("restart", "pgbouncer")
    drill.notes.append(f"PgBouncer stopped and started again in {time.monotonic() - started:.1f} s")


def kill_worker(drill: Drill, receiver: Receiver, driver: FleetDriver, world) -> None:
    """Hold the next webhook; SIGKILL the worker sending it; the other one must deliver it again."""
    receiver.armed.set()
    # A crossing: a drill user funded just above LOW_BALANCE_THRESHOLD takes one turn through nginx.
    account = world.drill_account
    status, _, _ = base.request(
        driver.base_url, "POST", f"/api/v1/sessions/{account.sessions[0]}/turns/",
        token=account.token, body={"content": "cross the threshold"},
    )  # fmt: skip
    drill.notes.append(f"a turn took the drill wallet under the threshold ({status})")
    if not receiver.held.wait(timeout=30):
        drill.notes.append("FAILED: no webhook arrived within 30 s")
        return
    attempt = receiver.held_attempt
    victim = attempt["worker"]
    if victim is None:
        drill.notes.append("FAILED: could not tell which worker sent the held delivery")
        receiver.release.set()
        return
    pid = fleet_pid(victim)
    os.killpg(pid, signal.SIGKILL)
    drill.notes.append(
        f"{attempt['type']} {attempt['event']} held at the receiver; SIGKILL to {victim} (pid {pid})"
    )
    time.sleep(0.5)
    receiver.release.set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with receiver.lock:
            done = [a for a in receiver.attempts if a["event"] == attempt["event"] and a["acknowledged"]]
        if done:
            break
        time.sleep(0.5)
    with receiver.lock:
        tries = [a for a in receiver.attempts if a["event"] == attempt["event"]]
    acked = [a for a in tries if a["acknowledged"]]
    drill.notes.append(
        f"event {attempt['event']}: {len(tries)} attempts received, {len(acked)} acknowledged, "
        f"by {', '.join(a['worker'] or '?' for a in acked) or 'none'} "
        f"({time.monotonic() - drill.started:.1f} s after the drill began)"
    )
    if len(acked) != 1 or acked[0]["worker"] == victim:
        drill.notes.append("FAILED: not delivered exactly once by the other worker")
    drill.ended = time.monotonic()
    fleet("restart", victim)
    receiver.worker_pids[victim] = fleet_pid(victim)
    drill.notes.append(f"{victim} restarted")


def replica_health(driver: FleetDriver) -> str:
    """The health check's `replica` field, as `status/reads` (absent without the replica router)."""
    status, _, body = base.request(driver.base_url, "GET", "/api/v1/health")
    replica = body.get("replica") if isinstance(body, dict) else None
    return (
        f"{status}, no replica field"
        if replica is None
        else f"{replica['status']}, reads on the {replica['reads']}"
    )


def stop_replica(drill: Drill, driver: FleetDriver, world) -> None:
    """Stop the replica: the staff reports keep answering (the router sends them to the primary)."""
    drill.notes.append(f"health before: {replica_health(driver)}")
    fleet("stop", "replica")
    drill.notes.append("replica stopped (fleet.sh stop replica)")
    statuses, slowest, seen = Counter(), 0.0, Counter()
    deadline = time.monotonic() + 12  # past DATABASE_REPLICA_CHECK_SECONDS (5 s) twice
    while time.monotonic() < deadline:
        for path in ("/api/v1/admin/usage/summary", "/api/v1/admin/usage/summary?bucket=day"):
            started = time.perf_counter()
            status, _, _ = base.request(driver.base_url, "GET", path, token=world.staff_token)
            slowest = max(slowest, time.perf_counter() - started)
            statuses[status] += 1
        seen[replica_health(driver)] += 1
        time.sleep(0.5)
    drill.notes.append(
        f"staff usage summaries while the replica was down: {dict(statuses)}, slowest {slowest * 1000:.0f} ms; "
        f"health said {dict(seen)}"
    )
    if set(statuses) != {200}:
        drill.notes.append("FAILED: a report did not answer 200 while the replica was down")
    drill.ended = time.monotonic()
    fleet("restart", "replica")
    time.sleep(6)
    drill.notes.append(f"replica started again; health: {replica_health(driver)}")


# --- invariants the fleet adds ----------------------------------------------------------------


def overdue_holds(ttl: int) -> int:
    """Holds still open past their TTL plus the release job's period (since their last progress)."""
    from datetime import timedelta

    from django.db.models import Q
    from django.utils import timezone

    from billing.models import CreditHold

    limit = timezone.now() - timedelta(seconds=RELEASE_JOB_SECONDS + 5)
    return (
        CreditHold.objects.filter(status=CreditHold.Status.HELD, expires_at__lt=limit)
        .filter(Q(progress_at__isnull=True) | Q(progress_at__lt=limit - timedelta(seconds=ttl)))
        .count()
    )


def watch_holds(ttl: int, stop: threading.Event, seen: list) -> None:
    from django.db import connection

    while not stop.wait(2):
        seen.append(overdue_holds(ttl))
    connection.close()


def wait_for_holds_closed(seconds: float) -> int:
    from billing.models import CreditHold

    deadline = time.monotonic() + seconds
    while True:
        left = CreditHold.objects.filter(status=CreditHold.Status.HELD).count()
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(2)


def check_webhooks(receiver: Receiver, since) -> str:
    from billing.models import WalletEvent
    from notifications.models import Delivery

    deadline = time.monotonic() + 60
    while True:
        events = {
            str(u) for u in WalletEvent.objects.filter(created_at__gte=since).values_list("uuid", flat=True)
        }
        pending = Delivery.objects.filter(
            event__created_at__gte=since, channel="webhook", state="pending"
        ).count()
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(1)
    with receiver.lock:
        acked = Counter(a["event"] for a in receiver.attempts if a["acknowledged"])
        received = Counter(a["event"] for a in receiver.attempts)
    base._require(not pending, f"{pending} webhook deliveries still pending")
    twice = [e for e, n in acked.items() if n > 1]
    base._require(not twice, f"events acknowledged more than once: {twice[:5]}")
    missing = events - set(acked)
    base._require(not missing, f"{len(missing)} wallet events never acknowledged: {sorted(missing)[:5]}")
    return (
        f"{len(events)} wallet events, each webhook acknowledged exactly once "
        f"({sum(received.values())} attempts received)"
    )


def without_drill_failures(result: base.Result) -> base.Result:
    """The grants for bench/load.py's check, less those a drill failed (5xx, in flight on a killed
    instance: written or not). A key whose every answer failed so is left out; the rest still must
    have exactly one row per key and only 200/409 answers."""
    failed_keys = {g["key"] for g in result.grants if g["status"] >= 500}
    answered_keys = {g["key"] for g in result.grants if g["status"] < 500}
    kept = [
        g
        for g in result.grants
        if g["status"] < 500 and not (g["key"] in failed_keys and g["key"] not in answered_keys)
    ]
    return base.Result(grants=kept)


# --- the run -----------------------------------------------------------------------------------


def seed(base_url: str, users: int, hot: int, keys: int):
    from billing import services
    from sessions_app.services import create_session

    world = base.seed_world(users=users, hot=hot)
    # A wallet just above LOW_BALANCE_THRESHOLD: its next turn crosses it (the worker drill's event).
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    user = get_user_model().objects.create_user(f"fleet-drill-{time.time_ns()}")
    services.open_wallet(user=user)
    staff = get_user_model().objects.filter(is_staff=True).order_by("-id").first()
    services.grant(
        user=user,
        amount=settings.LOW_BALANCE_THRESHOLD + Decimal("0.005"),
        reason="drill",
        initiated_by=staff,
    )
    world.drill_account = base.Account(
        user.pk, AuthToken.objects.create(user=user)[1], [create_session(owner=user).pk]
    )
    api_keys = []
    for account in world.accounts[:keys]:
        status, _, body = base.request(
            base_url, "POST", "/api/v1/users/me/keys", token=account.token, body={"name": "load"}
        )
        base._require(status == 201, f"creating an API key answered {status}: {body}")
        api_keys.append(body["key"])
    return world, api_keys


def run_load(args, env: dict) -> int:
    from django.utils import timezone

    base_url = args.url
    since = timezone.now()
    workers = {f"worker{n}": fleet_pid(f"worker{n}") for n in (1, 2)}
    receiver = Receiver(int(urlparse(env["WEBHOOK_URL"]).port), workers)
    receiver.start()  # before the seed: its grants may cross thresholds too
    world, keys = seed(base_url, args.users, args.hot, args.keys)
    driver = FleetDriver(base_url, world, keys)
    drills = [d for d in args.drills.split(",") if d and d != "none"]
    unknown = set(drills) - set(DRILLS)
    base._require(not unknown, f"unknown drills {unknown}; known: {DRILLS}")
    ttl = int(env.get("CREDIT_HOLD_TTL_SECONDS", 600))
    stop_watch, overdue_seen = threading.Event(), []
    watcher = threading.Thread(target=watch_holds, args=(ttl, stop_watch, overdue_seen), daemon=True)
    watcher.start()
    done: list[Drill] = []

    def conductor() -> None:
        # Drills spread over the run, one at a time, each with its own window.
        gap = args.seconds / (len(drills) + 1)
        for n, name in enumerate(drills):
            time.sleep(max(0.0, start + gap * (n + 0.5) - time.monotonic()))
            drill = Drill(name, started=time.monotonic())
            log(f"drill: {name}")
            try:
                if name == "kill-app":
                    kill_app(drill)
                elif name == "restart-pgbouncer":
                    restart_pgbouncer(drill)
                elif name == "kill-worker":
                    kill_worker(drill, receiver, driver, world)
                elif name == "stop-replica":
                    stop_replica(drill, driver, world)
            except Exception as exc:  # a drill that breaks is a finding, reported with the others
                drill.notes.append(f"FAILED: {type(exc).__name__}: {exc}")
            drill.ended = drill.ended or time.monotonic()
            done.append(drill)

    log(
        f"load: {args.seconds:.0f} s, {args.concurrency} clients through {base_url}; drills: {drills or 'none'}"
    )
    start = time.monotonic()
    conducting = threading.Thread(target=conductor, daemon=True)
    conducting.start()
    result = driver.run(total=args.max_requests, concurrency=args.concurrency, max_seconds=args.seconds)
    conducting.join(timeout=120)
    log(f"load done: {result.requests} requests in {result.seconds:.1f} s; waiting for holds to close")
    load_ended = time.monotonic()
    left = wait_for_holds_closed(ttl + RELEASE_JOB_SECONDS + 10)
    closed_after = time.monotonic() - load_ended
    stop_watch.set()
    watcher.join(timeout=10)
    failures = []
    invariants = []
    for check in (
        base.check_ledger_clean,
        base.check_debits_have_events,
        lambda: base.check_turns(result),
        lambda: base.check_grants(without_drill_failures(result)),
        lambda: check_webhooks(receiver, since),
    ):
        try:
            invariants.append(check())
        except base.InvariantBroken as broken:
            failures.append(str(broken))
    receiver.stop()
    if left:
        failures.append(f"{left} holds still open {ttl + RELEASE_JOB_SECONDS + 10} s after the load")
    else:
        invariants.append(
            f"no hold left open after the load (the last closed {closed_after:.0f} s after it ended)"
        )
    if max(overdue_seen, default=0):
        failures.append(f"up to {max(overdue_seen)} holds open past their TTL + the release job's minute")
    else:
        invariants.append(
            f"no hold ever open past its TTL ({ttl} s) + the release job's minute ({len(overdue_seen)} polls)"
        )

    windows = [(d.started, d.ended + DRILL_GRACE_SECONDS, d.name) for d in done]
    inside, outside = defaultdict(Counter), Counter()
    for at, operation, status in driver.timeline:
        if status >= 500 or status == 0:
            # The latest drill begun by then whose window is still open (a window's grace may overlap the next).
            window = next((name for s, e, name in reversed(windows) if s <= at <= e), None)
            (inside[window] if window else outside)[(operation, status)] += 1
    if outside:
        failures.append(f"errors outside any drill: {dict(outside)}")
    if driver.stream_errors:
        print(f"streams that ended with an error event (timed with the errors): {dict(driver.stream_errors)}")

    print(f"\n== fleet load through {base_url}: {result.requests} requests in {result.seconds:.1f} s "
          f"({result.requests / result.seconds:.0f}/s), {args.concurrency} clients")  # fmt: skip
    by_op = defaultdict(Counter)
    for (operation, status), n in result.statuses.items():
        by_op[operation][status] += n
    for operation, n in result.connection_errors.items():
        by_op[operation]["connection"] += n
    for operation in sorted(by_op):
        print(
            f"  {operation:16s} "
            + ", ".join(f"{s}: {n}" for s, n in sorted(by_op[operation].items(), key=str))
        )
    for drill in done:
        errors = inside.get(drill.name, Counter())
        print(f"-- drill {drill.name} ({drill.ended - drill.started:.1f} s): "
              f"{sum(errors.values())} failed answers in its window {dict(errors) or ''}")  # fmt: skip
        for note in drill.notes:
            print(f"     {note}")
            if note.startswith("FAILED"):
                failures.append(f"{drill.name}: {note}")
    print("invariants held:" if invariants else "")
    for line in invariants:
        print(f"  - {line}")
    for line in failures:
        print(f"  FAILED: {line}")
    return 1 if failures else 0


# --- measurements ------------------------------------------------------------------------------


def timed_load(url: str, seconds: float, clients: int, call) -> tuple[float, float, int]:
    """`clients` threads, each with its own keep-alive connection, for `seconds`: (req/s, p50 s, errors)."""
    latencies, errors, lock = [], [0], threading.Lock()
    deadline = time.monotonic() + seconds
    port = urlparse(url).port

    def client(k: int) -> None:
        conn, i = http.client.HTTPConnection("127.0.0.1", port, timeout=30), k
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                ok = call(conn, i)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn, ok = http.client.HTTPConnection("127.0.0.1", port, timeout=30), False
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed) if ok else None
                errors[0] += 0 if ok else 1
            i += clients
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    return len(latencies) / wall, median(latencies) if latencies else float("nan"), errors[0]


def measure(args, env: dict) -> int:
    """Turn vs auth/me through nginx + PgBouncer, and throughput with two app instances, then one."""
    world = base.seed_world(users=args.wallets, hot=0, starting=Decimal("500"))
    pairs = [(a.token, a.sessions[0]) for a in world.accounts]

    def me(conn, i):
        status, _, _ = base.request(
            args.url, "GET", "/api/v1/auth/me", token=pairs[i % len(pairs)][0], conn=conn
        )
        return status == 200

    def turn(conn, i):
        token, session = pairs[i % len(pairs)]
        status, _, _ = base.request(
            args.url,
            "POST",
            f"/api/v1/sessions/{session}/turns/",
            token=token,
            body={"content": "hello"},
            conn=conn,
        )
        return status == 201

    print(f"{args.clients} clients through {args.url} (nginx -> apps -> PgBouncer), {len(pairs)} wallets, "
          f"{args.rounds} rounds of {args.seconds:.0f} s per call; load {os.getloadavg()[0]:.2f}")  # fmt: skip
    results = {}
    for apps in (2, 1):
        if apps == 1:
            fleet("stop", "app2")
            time.sleep(6)  # nginx's fail_timeout: it stops trying app2
        try:
            timed_load(args.url, 3, args.clients, me)  # warm-up
            rates, ratios, turn_cpu, turns_done = defaultdict(list), [], Counter(), 0
            for _ in range(args.rounds):
                me_rate, me_p50, me_errors = timed_load(args.url, args.seconds, args.clients, me)
                before, started = cpu_ticks(fleet_cpu_pids(apps)), time.monotonic()
                turn_rate, turn_p50, turn_errors = timed_load(args.url, args.seconds, args.clients, turn)
                turns_done += turn_rate * (time.monotonic() - started)
                turn_cpu.update(cpu_between(before, cpu_ticks(fleet_cpu_pids(apps))))
                rates["auth/me"].append(me_rate)
                rates["turn"].append(turn_rate)
                ratios.append(turn_p50 / me_p50)
                print(f"  {apps} app(s): auth/me {me_rate:6.1f}/s p50 {me_p50 * 1000:6.2f} ms; "
                      f"turn {turn_rate:6.1f}/s p50 {turn_p50 * 1000:6.2f} ms; ratio {turn_p50 / me_p50:.2f}x; "
                      f"errors {me_errors + turn_errors}", flush=True)  # fmt: skip
            results[apps] = (median(rates["auth/me"]), median(rates["turn"]), median(ratios))
            per_turn = ", ".join(
                f"{name} {seconds / turns_done * 1000:.2f} ms" for name, seconds in turn_cpu.items()
            )
            print(f"  CPU per turn ({apps} app(s), the turn rounds): {per_turn}", flush=True)
        finally:
            if apps == 1:
                fleet("restart", "app2")
    for apps, (me_rate, turn_rate, ratio) in results.items():
        print(f"== {apps} app instance(s): auth/me {me_rate:.1f}/s, turns {turn_rate:.1f}/s, "
              f"turn/auth-me p50 {ratio:.2f}x (limit 2.2x), median of {args.rounds} rounds")  # fmt: skip
    print(
        f"== two instances over one: turns {results[2][1] / results[1][1]:.2f}x, auth/me {results[2][0] / results[1][0]:.2f}x"
    )
    from billing.reconcile import check_ledger

    print(f"check_ledger: {'clean' if check_ledger().ok else 'DISCREPANCIES'}")
    return 0


def measure_prepare(args, env: dict) -> int:
    """A turn's cost with the hot statements prepared or not, straight to the primary and through
    PgBouncer: one serve.sh instance (WEB_CONCURRENCY=1) per variant, on a spare port, no nginx."""
    world = base.seed_world(users=args.wallets, hot=0, starting=Decimal("500"))
    pairs = [(a.token, a.sessions[0]) for a in world.accounts]
    port = base.free_port()
    url = f"http://127.0.0.1:{port}"
    # (database, DATABASE_SERVER_PREPARE, DATABASE_STATEMENT_FUNCTIONS): unprepared, the hot statements
    # run as server functions (the default) or are sent as text, parsed and planned every time.
    variants = {
        "direct, prepared": (env["WORKER_DATABASE_URL"], "true", "true"),
        "direct, unprepared, server functions": (env["WORKER_DATABASE_URL"], "false", "true"),
        "direct, unprepared, as text": (env["WORKER_DATABASE_URL"], "false", "false"),
        "PgBouncer, unprepared, server functions": (env["DATABASE_URL"], "false", "true"),
        "PgBouncer, unprepared, as text": (env["DATABASE_URL"], "false", "false"),
        "PgBouncer, prepared (unsupported by 1.18)": (env["DATABASE_URL"], "true", "true"),
    }

    def me(conn, i):
        return (
            base.request(url, "GET", "/api/v1/auth/me", token=pairs[i % len(pairs)][0], conn=conn)[0] == 200
        )

    def turn(conn, i):
        token, session = pairs[i % len(pairs)]
        path = f"/api/v1/sessions/{session}/turns/"
        return base.request(url, "POST", path, token=token, body={"content": "hello"}, conn=conn)[0] == 201

    print(f"{args.clients} clients straight to one serve.sh process per variant; {args.rounds} rounds of "
          f"{args.seconds:.0f} s; load {os.getloadavg()[0]:.2f}")  # fmt: skip
    for name, (database_url, prepare, functions) in variants.items():
        server_env = {**os.environ, **env, "DATABASE_URL": database_url, "DATABASE_SERVER_PREPARE": prepare}
        server_env["DATABASE_STATEMENT_FUNCTIONS"] = functions
        server_env.update(HOST="127.0.0.1", PORT=str(port), WEB_CONCURRENCY="1", LOG_LEVEL="ERROR")
        server = subprocess.Popen(  # noqa: S603 - our own server script
            ["sh", str(ROOT / "scripts" / "serve.sh")], cwd=ROOT, env=server_env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if base.request(url, "GET", "/api/v1/health")[0] == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            timed_load(url, 3, args.clients, turn)  # warm-up: every thread's connection prepares
            me_p50s, turn_p50s, turn_rates, errors = [], [], [], 0
            pids = {"app": server.pid, "pgbouncer": fleet_pid("pgbouncer"), "postgres": postmaster_pid()}
            turn_cpu, turns_done = Counter(), 0
            for _ in range(args.rounds):
                _, me_p50, me_errors = timed_load(url, args.seconds, args.clients, me)
                before, started = cpu_ticks(pids), time.monotonic()
                turn_rate, turn_p50, turn_errors = timed_load(url, args.seconds, args.clients, turn)
                turns_done += turn_rate * (time.monotonic() - started)
                turn_cpu.update(cpu_between(before, cpu_ticks(pids)))
                me_p50s.append(me_p50)
                turn_p50s.append(turn_p50)
                turn_rates.append(turn_rate)
                errors += me_errors + turn_errors
            print(f"  {name:42s} turn p50 {median(turn_p50s) * 1000:6.2f} ms, {median(turn_rates):6.1f}/s; "
                  f"auth/me p50 {median(me_p50s) * 1000:6.2f} ms; ratio {median(turn_p50s) / median(me_p50s):.2f}x; "
                  f"failed requests {errors}", flush=True)  # fmt: skip
            per_turn = ", ".join(f"{k} {v / max(turns_done, 1) * 1000:.2f} ms" for k, v in turn_cpu.items())
            print(f"  {'':42s} CPU per turn: {per_turn}", flush=True)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    return 0


def postmaster_pid() -> int:
    data = Path(os.environ.get("FLEET_DIR", ROOT / ".fleet")) / "pg" / "primary" / "postmaster.pid"
    return int(data.read_text().split()[0])


def fleet_cpu_pids(apps: int) -> dict[str, int]:
    pids = {f"app{n}": fleet_pid(f"app{n}") for n in range(1, apps + 1)}
    return {
        **pids,
        "pgbouncer": fleet_pid("pgbouncer"),
        "nginx": fleet_pid("nginx"),
        "postgres": postmaster_pid(),
    }


def charge_threads(
    users: list, seconds: float, threads: int, cpu_of: dict | None = None
) -> tuple[int, int, Decimal, float]:
    """`threads` threads (a connection each) calling billing.services.charge on `users` in turn; with
    `cpu_of` ({name: pid}), also the CPU seconds those processes spent meanwhile (sampled before the
    threads' connections close, so their backends are counted)."""
    from django.db import connection

    from billing import services
    from billing.models import ModelPrice

    price = ModelPrice.objects.get(model="echo-1")
    counts, errors, costs, lock = [0], [0], [Decimal(0)], threading.Lock()
    ready, go = threading.Barrier(threads + 1), threading.Event()
    finished, release = threading.Barrier(threads + 1), threading.Event()

    def work(k: int) -> None:
        connection.ensure_connection()
        ready.wait()
        go.wait()
        deadline, i = time.monotonic() + seconds, k
        while time.monotonic() < deadline:
            try:
                cost = services.charge(
                    user=users[i % len(users)],
                    price=price,
                    provider="echo",
                    input_tokens=120,
                    output_tokens=80,
                ).event.cost
                with lock:
                    counts[0] += 1
                    costs[0] += cost
            except Exception:  # a failure is a figure here
                with lock:
                    errors[0] += 1
            i += threads
        finished.wait()
        release.wait()
        connection.close()

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    ready.wait()
    before = cpu_ticks(cpu_of or {})
    go.set()
    finished.wait()
    cpu = sum(cpu_between(before, cpu_ticks(cpu_of or {})).values())
    release.set()
    for thread in pool:
        thread.join()
    return counts[0], errors[0], costs[0], cpu


def stream_burst(world, args, content: str, streams: int) -> None:
    """`streams` streamed turns at once through nginx; first byte, completion, failures."""
    first_bytes, totals, failures, lock = [], [], Counter(), threading.Lock()
    barrier = threading.Barrier(streams)

    def stream(k: int) -> None:
        account = world.accounts[k % len(world.accounts)]
        conn = http.client.HTTPConnection("127.0.0.1", urlparse(args.url).port, timeout=120)
        barrier.wait()
        started = time.perf_counter()
        try:
            conn.request("POST", f"/api/v1/sessions/{account.sessions[0]}/turns/", body=json.dumps({"content": content}),
                         headers={"Authorization": f"Token {account.token}", "Content-Type": "application/json",
                                  "Accept": "text/event-stream"})  # fmt: skip
            response = conn.getresponse()
            first = response.read1(1)
            first_at = time.perf_counter() - started
            raw = first + response.read()
            ok = response.status == 200 and sse_events(raw)[-1][0] == "done"
            with lock:
                if ok:
                    first_bytes.append(first_at)
                    totals.append(time.perf_counter() - started)
                else:
                    failures[response.status] += 1
        except (OSError, http.client.HTTPException) as exc:
            with lock:
                failures[type(exc).__name__] += 1
        finally:
            conn.close()

    pool = [threading.Thread(target=stream, args=(k,)) for k in range(streams)]
    started = time.monotonic()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=180)
    wall = time.monotonic() - started
    first_bytes.sort()
    p = lambda q: first_bytes[min(len(first_bytes) - 1, int(q * len(first_bytes)))] * 1000  # noqa: E731
    print(f"== {streams} concurrent streams on one uvicorn process (through nginx; {args.words} words, a piece every {args.drip} s; "
          f"of output): {len(first_bytes)} complete in {wall:.1f} s, first byte p50 {p(0.5):.0f} ms, "
          f"p99 {p(0.99):.0f} ms, longest {max(totals, default=0):.1f} s; failures {dict(failures) or 0}", flush=True)  # fmt: skip


def measure_capacity(args, env: dict) -> int:
    """Charges per second per core of the primary, the hot-wallet ceiling, and streams on one process."""
    from billing.models import Wallet
    from billing.reconcile import check_ledger

    world = base.seed_world(users=200, hot=1, starting=Decimal("500"))
    from django.contrib.auth import get_user_model

    users = list(get_user_model().objects.filter(pk__in=[a.user_id for a in world.accounts]))
    print(f"load {os.getloadavg()[0]:.2f} at the start")
    started = time.monotonic()
    done, errors, _, cpu = charge_threads(users, args.seconds, 8, {"postgres": postmaster_pid()})
    wall = time.monotonic() - started
    print(f"== charges straight to the primary, 8 threads, 200 wallets: {done / wall:.0f}/s, errors {errors}; "
          f"primary CPU {cpu:.1f} s in {wall:.1f} s -> {done / cpu:.0f} charges per CPU-second of PostgreSQL")  # fmt: skip
    hot = users[0]
    before = Wallet.objects.get(user=hot).balance
    done, errors, costs, _ = charge_threads([hot], args.seconds, 16)
    exact = Wallet.objects.get(user=hot).balance == before - costs
    print(f"== hot wallet, 16 threads on one wallet: {done / args.seconds:.0f} charges/s, errors {errors}, "
          f"balance exact {exact}")  # fmt: skip

    # Streams on one uvicorn process: app2 stopped, app1 (WEB_CONCURRENCY=1) restarted with a slow echo.
    fleet("stop", "app2")
    extra = Path(os.environ.get("FLEET_DIR", ROOT / ".fleet")) / "run" / "app1.extra"
    before_extra = extra.read_text() if extra.exists() else ""
    os.environ["FLEET_EXTRA_ENV"] = f"LLM_ECHO_STREAM_DELAY_SECONDS={args.drip} THROTTLE_TURN_RATE="
    fleet("restart", "app1")
    time.sleep(6)  # nginx's fail_timeout for app2
    try:
        content = " ".join(f"word{n}" for n in range(args.words))
        for streams in args.streams:
            stream_burst(world, args, content, streams)
    finally:
        os.environ["FLEET_EXTRA_ENV"] = before_extra  # app1 as it was
        fleet("restart", "app1")
        os.environ.pop("FLEET_EXTRA_ENV")
        fleet("restart", "app2")  # with its own (fleet.sh keeps each process's FLEET_EXTRA_ENV)
    left = wait_for_holds_closed(30)
    print(f"holds open after: {left}; check_ledger: {'clean' if check_ledger().ok else 'DISCREPANCIES'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('FLEET_PORT', '8080')}")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--hot", type=int, default=3)
    parser.add_argument("--keys", type=int, default=10, help="users with an API key for the gateway")
    parser.add_argument("--drills", default=",".join(DRILLS), help=f"comma-separated, of {DRILLS}, or none")
    parser.add_argument("--measure", action="store_true", help="the ratio and throughput, 2 then 1 app")
    parser.add_argument(
        "--measure-prepare", action="store_true", help="a turn's cost, prepared or not, direct or pooled"
    )
    parser.add_argument(
        "--measure-capacity", action="store_true", help="charges/s per core, hot wallet, streams"
    )
    parser.add_argument("--streams", type=lambda v: [int(n) for n in v.split(",")], default=[100, 300])
    parser.add_argument("--drip", type=float, default=0.1, help="--measure-capacity: seconds between pieces")
    parser.add_argument("--words", type=int, default=30, help="--measure-capacity: a stream's pieces")
    parser.add_argument("--rounds", type=int, default=3, help="--measure: rounds per figure")
    parser.add_argument("--clients", type=int, default=8, help="--measure: client threads")
    parser.add_argument("--wallets", type=int, default=600, help="--measure: users the turns spread over")
    args = parser.parse_args(argv)
    env = fleet_env()
    setup_django(env)
    if args.measure_capacity:
        return measure_capacity(args, env)
    if args.measure_prepare:
        return measure_prepare(args, env)
    return measure(args, env) if args.measure else run_load(args, env)


if __name__ == "__main__":
    sys.exit(main())
