"""Streamed turns under load: a burst of SSE streams through the deployed server against a slow fake model.

By hand (a scratch database creditdesk_stream_bench is dropped, created, migrated and seeded):
    .venv/bin/python bench/load_stream.py                      # 200 streams, a fifth hang up
    .venv/bin/python bench/load_stream.py --streams 50         # reduced size
    .venv/bin/python bench/load_stream.py --compare            # plain turns: gunicorn (WSGI) vs uvicorn (ASGI)

The server is the one `make serve` runs (scripts/serve.sh, `--processes` of them, each with a pool of
`--pool` connections) in front of bench/fake_openai.py, which answers `--first-byte` seconds after a
request and then writes 4-token pieces `--drip` seconds apart (its first piece one drip after its
headers). Three steps:
1. one stream at a time: how long after the model sent its first piece the client has its first
   delta (the relay), and the first byte from the request;
2. calibration: the same burst with the model answering only after 2 s, so until every stream has
   called it the server does nothing but the streams' synchronous starts (authentication, session
   read, reservation, the call): the server's CPU per start over that window, PostgreSQL's, and the
   machine's (every process: the load generator, the fake model and PostgreSQL too);
3. the burst: `--streams` clients at once, a fifth hanging up after a random number of pieces.
The floor for the burst's first byte: the model's own first byte plus every stream's synchronous
start (the server's CPU and PostgreSQL's for it) spread over the cores. Afterwards: no hold is open,
every stream has exactly one metered call and every charged call one debit, a hung-up stream is
charged at least what it read (never more than its hold), check_ledger is clean, and a plain turn
still answers 201. Loopback only, every wait bounded.
"""

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._stats import percentile  # noqa: E402
from bench.fake_openai import FakeOpenAIServer  # noqa: E402
from bench.load import HOST, Server, free_port, fresh_database, setup_django  # noqa: E402

CONTENT = "Tell me a long story about streams, holds and ledgers, please. " * 3  # ~50 reply tokens


@dataclass
class Outcome:
    status: int = 0
    ttfb: float | None = None
    first_at: float = 0.0  # when the first delta arrived (time.monotonic, comparable with the fake's clock)
    deltas: list[str] = field(default_factory=list)
    final: str | None = None  # "done" or "error"
    body: dict | None = None
    hung_up: bool = False
    error: str | None = None


def start(kind: str, *, database_url: str, workers: int, env: dict) -> Server:
    port = free_port()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"creditdesk-{kind}-{port}.log"
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "bench-not-a-secret",
        "DEBUG": "false",
        "ALLOWED_HOSTS": HOST,
        "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    binary = Path(sys.executable).parent
    if kind == "deployed":  # the server `make serve` runs, WEB_CONCURRENCY processes
        command = ["sh", str(ROOT / "scripts" / "serve.sh")]
        environment.update(VENV_BIN=str(binary), HOST=HOST, PORT=str(port), WEB_CONCURRENCY=str(workers))
    elif kind == "uvicorn":
        command = [str(binary / "uvicorn"), "config.asgi:application", "--workers", str(workers)]
        command += ["--host", HOST, "--port", str(port), "--no-access-log", "--backlog", "1024"]
    else:
        command = [
            str(binary / "gunicorn"),
            "config.wsgi",
            "--workers",
            str(workers),
            "--bind",
            f"{HOST}:{port}",
        ]
    log = log_path.open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own server, fixed arguments
        command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = Server(process=process, port=port, log_path=log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited; see {log_path}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/api/v1/health")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{kind} did not start; see {log_path}")


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def seed(n: int) -> list[tuple[int, str, int]]:
    """n users, each with credits, a token and a session: (user id, token, session id)."""
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    from billing import services
    from billing.models import ModelPrice
    from sessions_app.services import create_session

    ModelPrice.objects.get_or_create(
        model="echo-1", defaults={"input_price_per_1k": Decimal("0.5"), "output_price_per_1k": Decimal("1.5")}
    )
    User = get_user_model()  # noqa: N806 - a class
    staff = User.objects.create_user(f"stream-staff-{time.time_ns()}", is_staff=True)
    accounts = []
    for i in range(n):
        user = User.objects.create_user(f"stream-{time.time_ns()}-{i}")
        services.open_wallet(user=user)
        services.grant(user=user, amount=Decimal("20"), reason="stream bench", initiated_by=staff)
        session = create_session(owner=user, model="echo-1")
        accounts.append((user.pk, AuthToken.objects.create(user=user)[1], session.pk))
    return accounts


def one_stream(port: int, token: str, session_id: int, hang_after: int | None, out: Outcome, go) -> None:
    go.wait()
    started = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        body = json.dumps({"content": CONTENT})
        headers = {
            "Authorization": f"Token {token}",
            "Accept": "text/event-stream",
            "Content-Type": "application/json",
        }
        conn.request("POST", f"/api/v1/sessions/{session_id}/turns/", body=body, headers=headers)
        response = conn.getresponse()
        out.status = response.status
        name = None
        while line := response.readline():
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                if name == "delta":
                    if out.ttfb is None:
                        out.first_at = time.monotonic()
                        out.ttfb = out.first_at - started
                    out.deltas.append(data["text"])
                    if hang_after is not None and len(out.deltas) >= hang_after:
                        out.hung_up = True
                        conn.sock.shutdown(socket.SHUT_RDWR)
                        return
                else:
                    out.final, out.body = name, data
                    return
    except OSError as exc:
        out.error = repr(exc)
    finally:
        conn.close()


def server_cpu_seconds(server) -> float:
    """CPU (user + system) used so far by the server's processes."""
    total = 0.0
    for pid in [server.process.pid, *server.worker_pids()]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def postgres_cpu_seconds() -> float:
    """CPU (user + system) used so far by the machine's PostgreSQL processes (backends, WAL writer, ...)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().split(" (", 1)[1].rsplit(")", 1)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if name == "postgres":
            fields = rest.split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has spent busy so far (all cores; /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def burst(server, accounts, plans, outcomes, args, until=None) -> tuple[float, float, int]:
    """Start one stream per account at once; (seconds until all ended, peak RSS KiB, idle RSS KiB).

    With `until` (a callable), also return when it first holds, for the calibration below.
    """
    go = threading.Event()
    threads = [
        threading.Thread(target=one_stream, args=(server.port, token, sid, plan, out, go), daemon=True)
        for (_, token, sid), plan, out in zip(accounts, plans, outcomes, strict=True)
    ]
    idle = rss_kib([server.process.pid, *server.worker_pids()])
    for thread in threads:
        thread.start()
    started = time.monotonic()
    go.set()
    peak = idle
    while any(t.is_alive() for t in threads) and time.monotonic() - started < args.max_seconds:
        peak = max(peak, rss_kib([server.process.pid, *server.worker_pids()]))
        if until is not None and until():
            break
        time.sleep(0.02 if until is not None else 0.1)
    elapsed = time.monotonic() - started
    if until is None:
        for thread in threads:
            thread.join(timeout=1)
    return elapsed, peak, idle


def run_streams(args) -> int:
    """The burst on the deployed server, against its floor (module docstring)."""
    url = fresh_database(args.postgres, args.database)
    subprocess.run(  # noqa: S603 - our manage.py
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, "SECRET_KEY": "x"},
        check=True,
    )
    setup_django(url)
    singles, calibration, accounts = seed(20), seed(args.streams), seed(args.streams)
    fake = FakeOpenAIServer(stream_delay=args.drip, first_byte_delay=args.first_byte)
    fake.start()
    env = {
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": fake.base_url,
        "LLM_TIMEOUT_SECONDS": "60",
        "DATABASE_POOL_MAX_SIZE": str(args.pool),
    }
    server = start("deployed", database_url=url, workers=args.processes, env=env)
    rng = random.Random(14)  # noqa: S311 - not crypto
    pieces = len(f"Echo: {CONTENT}") // 16
    plans = [rng.randint(1, pieces - 1) if i % 5 == 0 else None for i in range(args.streams)]
    outcomes = [Outcome() for _ in accounts]
    cores = os.cpu_count() or 1
    try:
        # 1. One stream at a time: its first byte against the model's own (the first pays for imports).
        alone, relays = [], []
        for _, token, sid in singles:
            out = Outcome()
            ready = threading.Event()
            ready.set()
            one_stream(server.port, token, sid, None, out, ready)
            alone.append(out.ttfb)
            relays.append(out.first_at - fake.first_piece_sent)
        single = percentile(sorted(alone[2:]), 0.5)
        relay = percentile(sorted(relays[2:]), 0.5)
        # 2. Calibration: the same burst with the model answering only after 2 s, so the server does
        # nothing but the streams' synchronous starts (authentication, session read, reservation)
        # until every one of them has called the model: its CPU over that window, per stream.
        fake.first_byte_delay = 2.0
        calls_before = fake.counts.get("ok", 0)
        cpu_before, busy_before = server_cpu_seconds(server), machine_busy_seconds()
        database_before = postgres_cpu_seconds()
        calibrated = [Outcome() for _ in calibration]
        window, _, _ = burst(
            server,
            calibration,
            [None] * args.streams,
            calibrated,
            args,
            until=lambda: fake.counts.get("ok", 0) - calls_before >= args.streams,
        )
        start_cpu = (server_cpu_seconds(server) - cpu_before) / args.streams
        database_cpu = (postgres_cpu_seconds() - database_before) / args.streams
        machine_cpu = (machine_busy_seconds() - busy_before) / args.streams  # clients, model, PostgreSQL too
        fake.first_byte_delay = args.first_byte
        deadline = time.monotonic() + 60  # the calibration streams finish before the burst starts
        while not all(o.final or o.error for o in calibrated) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        # 3. The burst.
        elapsed, peak, idle = burst(server, accounts, plans, outcomes, args)
        report = check(args, accounts, outcomes, server)
    finally:
        server.stop()
        fake.stop()
    ttfb = sorted(o.ttfb for o in outcomes if o.ttfb is not None)
    model_first_byte = args.first_byte + args.drip  # the fake's first piece comes one drip after its headers
    # The floor: the model's own first byte, then every stream's synchronous start (the server's CPU
    # and PostgreSQL's for it: both on these cores) spread over the cores. The load generator and
    # the fake model share the cores too, but are not the server's work: not in the floor.
    floor = model_first_byte + args.streams * (start_cpu + database_cpu) / cores
    server_floor = model_first_byte + args.streams * start_cpu / cores
    p50, p99 = percentile(ttfb, 0.5), percentile(ttfb, 0.99)
    done = sum(o.final == "done" for o in outcomes)
    hung = sum(o.hung_up for o in outcomes)
    print(
        f"streams through the deployed server ({args.processes} processes, pool {args.pool} each), drip {args.drip}s"
    )
    print(
        f"  one stream alone: its first byte reaches the client {relay * 1000:.2f} ms after the model sent its"
        f" own (target <= 5 ms); from the request, {single * 1000:.1f} ms against the model's {model_first_byte * 1000:.0f} ms"
    )
    print(
        f"  a stream's synchronous start: {start_cpu * 1000:.2f} ms of server CPU and {database_cpu * 1000:.2f} ms of"
        f" PostgreSQL's, {machine_cpu * 1000:.2f} ms of the machine's (calibration burst: all {args.streams} at the model after {window:.2f} s; the machine's"
        f" CPU over its cores: {args.streams * machine_cpu / cores:.2f} s)"
    )
    print(
        f"  burst of {args.streams}: done {done}, hung up {hung}, other {args.streams - done - hung} in {elapsed:.1f}s;"
        f" the fake model had {fake.max_open_streams} open at once at most"
    )
    print(
        f"  time to first byte: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms; floor {floor * 1000:.0f} ms ="
        f" model {model_first_byte * 1000:.0f} ms + {args.streams} x ({start_cpu * 1000:.2f} + {database_cpu * 1000:.2f})"
        f" ms / {cores} cores; p99 / floor {p99 / floor:.2f} (target <= 1.5)"
    )
    print(
        f"  (against the server's CPU alone, {server_floor * 1000:.0f} ms: {p99 / server_floor:.2f}; against the"
        f" machine's, load generator and model included, {(model_first_byte + args.streams * machine_cpu / cores) * 1000:.0f}"
        f" ms: {p99 / (model_first_byte + args.streams * machine_cpu / cores):.2f})"
    )
    print(
        f"  server RSS idle {idle / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB: {(peak - idle) / args.streams:.0f} KiB/stream"
    )
    for line in report:
        print(f"  ok: {line}")
    return 0


def check(args, accounts, outcomes, server) -> list[str]:
    from billing.models import CreditHold, CreditTransaction, LLMCallEvent
    from billing.reconcile import check_ledger
    from sessions_app.models import Turn
    from sessions_app.providers import count_tokens

    deadline = time.monotonic() + 30
    while CreditHold.objects.filter(status="held").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    lines = []
    late = 0
    errors = [o.error or o.status for o in outcomes if o.status != 200 or o.error]
    assert not errors, f"streams that failed: {errors[:5]}"
    assert not CreditHold.objects.filter(status="held").exists(), "holds left open"
    lines.append(f"{CreditHold.objects.count()} holds, none open")
    for (user_id, _, _), out in zip(accounts, outcomes, strict=True):  # the warm-up's user is not checked
        events = list(LLMCallEvent.objects.filter(user_id=user_id))
        assert len(events) == 1, f"user {user_id}: {len(events)} calls for one stream"
        (event,) = events
        debits = CreditTransaction.objects.filter(llm_call=event, kind="debit").count()
        assert debits == (1 if event.cost else 0), f"call {event.pk}: {debits} debits"
        if out.final == "done":
            assert (
                event.output_tokens == count_tokens("".join(out.deltas)) == out.body["usage"]["output_tokens"]
            )
            assert Turn.objects.filter(llm_call=event).count() == 1
        else:
            assert out.hung_up, f"user {user_id}: ended with {out.final} {out.body}"
            assert event.cost > 0 and event.output_tokens >= count_tokens("".join(out.deltas))
            hold = CreditHold.objects.get(llm_call=event)
            assert event.cost <= hold.amount, (event.pk, event.cost, hold.amount)
            if Turn.objects.filter(llm_call=event).exists():
                # The model had finished (usage reported, turn settled) before the hang-up reached
                # the server: a completed turn, billed by the report, like a plain POST whose
                # client drops before reading its 201.
                late += 1
                assert event.output_tokens == count_tokens(f"Echo: {CONTENT}")
    lines.append(f"{late} hang-ups reached the server after their model had finished: completed turns")
    lines.append(
        "every stream: one metered call, one debit; done = its deltas' tokens; hang-ups charged what they read"
    )
    result = check_ledger()
    assert result.ok, result.discrepancies[:5]
    lines.append("check_ledger clean")
    _, token, session_id = accounts[0]
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    conn.request(
        "POST",
        f"/api/v1/sessions/{session_id}/turns/",
        body=json.dumps({"content": "and a plain turn"}),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    response.read()
    assert response.status == 201, response.status
    lines.append("a plain turn afterwards: 201")
    return lines


def run_compare(args) -> int:
    """Plain (non-streamed) turns on both servers, same workers, same clients."""
    url = fresh_database(args.postgres, args.database)
    subprocess.run(  # noqa: S603 - our manage.py
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, "SECRET_KEY": "x"},
        check=True,
    )
    setup_django(url)
    accounts = seed(args.concurrency)
    for kind in ("gunicorn", "uvicorn"):
        server = start(kind, database_url=url, workers=args.workers, env={"DATABASE_POOL_MAX_SIZE": "4"})
        latencies: list[float] = []
        lock = threading.Lock()

        def client(token, sid, server=server, latencies=latencies, lock=lock):
            conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
            for _ in range(args.turns // args.concurrency):
                t = time.monotonic()
                conn.request(
                    "POST",
                    f"/api/v1/sessions/{sid}/turns/",
                    body=b'{"content": "a plain turn"}',
                    headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
                )
                response = conn.getresponse()
                response.read()
                assert response.status == 201, response.status
                with lock:
                    latencies.append(time.monotonic() - t)
            conn.close()

        try:
            threads = [threading.Thread(target=client, args=(tok, sid)) for _, tok, sid in accounts]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=args.max_seconds)
            elapsed = time.monotonic() - started
        finally:
            server.stop()
        latencies.sort()
        print(
            f"{kind:8s} {args.workers} workers, {args.concurrency} clients: {len(latencies)} turns in "
            f"{elapsed:.1f}s = {len(latencies) / elapsed:.0f}/s, p50 {percentile(latencies, 0.5) * 1000:.1f} ms,"
            f" p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
        )
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Streamed turns under load (uvicorn, fake slow model).")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--drip", type=float, default=0.1, help="seconds between the model's pieces")
    parser.add_argument("--pool", type=int, default=4, help="the server's DATABASE_POOL_MAX_SIZE")
    parser.add_argument("--max-seconds", type=float, default=120)
    parser.add_argument("--compare", action="store_true", help="plain turns: gunicorn vs uvicorn")
    parser.add_argument("--workers", type=int, default=2, help="--compare: each server's processes")
    parser.add_argument("--processes", type=int, default=2, help="the deployed server's (WEB_CONCURRENCY)")
    parser.add_argument("--first-byte", type=float, default=0.05, help="the model's own time to first byte")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--turns", type=int, default=800)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--database", default="creditdesk_stream_bench", help="scratch database (dropped first)"
    )
    args = parser.parse_args(argv)
    return run_compare(args) if args.compare else run_streams(args)


if __name__ == "__main__":
    sys.exit(main())
