"""The OpenAI-compatible gateway under load: plain calls vs auth/me, time to first chunk, 200 streams on one process.

By hand (a scratch database creditdesk_gateway_bench is dropped, created and migrated):
    .venv/bin/python bench/bench_gateway.py                 # all three
    .venv/bin/python bench/bench_gateway.py --only plain    # or ttfc, or streams

1. plain: POST /v1/chat/completions (echo provider) against GET /api/v1/auth/me, same clients, same
   uvicorn server (`make serve`'s); p50 ratio, best of two interleaved rounds (limit: 2.2x, as the turn).
2. ttfc: a streamed call's time to its first content chunk through the gateway against the fake
   upstream's own first byte (bench/fake_openai.py, called directly), at 1 and 50 concurrent streams,
   on the server as `make serve` runs it (2 processes; `--ttfc-workers 1` for one),
   with the model answering 0.05 s after a request (its first pieces land while later streams'
   starts still run on the cores) and 0.5 s (a hosted model's usual wait: after them).
3. streams: 200 concurrent streams on one uvicorn process against the slow fake upstream; afterwards
   no hold is open, every stream has one call event and one debit, check_ledger is clean; the
   server's resident memory per open stream is printed.
The load generator shares the machine's cores with the server: its CPU is part of every figure.
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._stats import percentile, summary  # noqa: E402
from bench.fake_openai import FakeOpenAIServer  # noqa: E402
from bench.load import HOST, fresh_database, setup_django  # noqa: E402
from bench.load_stream import rss_kib, start  # noqa: E402

MESSAGES = [{"role": "user", "content": "Tell me a long story about streams, holds and ledgers. " * 3}]


def seed(n: int) -> list[tuple[str, str]]:
    """n users with credits: (session token, gateway key) each."""
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    from accounts.keys import create_api_key
    from billing import services
    from billing.models import ModelPrice

    ModelPrice.objects.get_or_create(
        model="echo-1", defaults={"input_price_per_1k": Decimal("0.5"), "output_price_per_1k": Decimal("1.5")}
    )
    User = get_user_model()  # noqa: N806 - a class
    # A superuser: 1000 at once is past SUPPORT_GRANT_LIMIT for plain staff.
    staff = User.objects.create_user(f"gw-staff-{time.time_ns()}", is_staff=True, is_superuser=True)
    out = []
    for i in range(n):
        user = User.objects.create_user(f"gw-{time.time_ns()}-{i}")
        services.grant(user=user, amount=Decimal("1000"), reason="gateway bench", initiated_by=staff)
        out.append((AuthToken.objects.create(user=user)[1], create_api_key(user=user, name="bench")[1]))
    return out


def call(port: int, method: str, path: str, auth: str, body: dict | None = None, conn=None) -> int:
    conn = conn or http.client.HTTPConnection(HOST, port, timeout=60)
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def load(name: str, clients: int, seconds: float, make_call) -> list[float]:
    latencies, errors, lock = [], [0], threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(k: int):
        i = k
        while time.monotonic() < deadline:
            started = time.perf_counter()
            ok = make_call(i)
            with lock:
                (
                    latencies.append(time.perf_counter() - started)
                    if ok
                    else errors.__setitem__(0, errors[0] + 1)
                )
            i += clients

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = summary(latencies)
    print(
        f"  {name:32s} {len(latencies) / seconds:8.1f}/s  p50 {s.p50 * 1000:7.2f} ms  p99 {s.p99 * 1000:7.2f} ms"
        f"  errors {errors[0]}",
        flush=True,
    )
    return latencies


def bench_plain(url: str, args) -> None:
    accounts = seed(50)
    server = start("uvicorn", database_url=url, workers=args.workers, env=_server_env())
    try:
        port = server.port

        def me(i):
            return call(port, "GET", "/api/v1/auth/me", f"Token {accounts[i % len(accounts)][0]}") == 200

        def plain(i):
            body = {"model": "echo-1", "messages": [{"role": "user", "content": "hello"}]}
            return (
                call(port, "POST", "/v1/chat/completions", f"Bearer {accounts[i % len(accounts)][1]}", body)
                == 200
            )

        load("warm-up", args.clients, 3, me)
        rounds = []
        for _ in range(2):
            m = summary(load("GET /api/v1/auth/me", args.clients, args.seconds, me))
            g = summary(load("POST /v1/chat/completions", args.clients, args.seconds, plain))
            rounds.append(g.p50 / m.p50)
        ratio = min(rounds)
        print(
            f"  gateway call / auth/me (p50, best round): {ratio:.2f}x (limit 2.2x) -> {'PASS' if ratio <= 2.2 else 'FAIL'}"
        )
    finally:
        server.stop()


def _server_env(**extra) -> dict:
    return {
        "LLM_PROVIDER": "echo",
        "DATABASE_POOL_MAX_SIZE": "4",
        "THROTTLE_GATEWAY_RATE": "",
        "THROTTLE_AUTH_RATE": "",
        "THROTTLE_TURN_RATE": "",
        **extra,
    }


def first_chunk(port: int, path: str, headers: dict, body: dict) -> tuple[float, float] | None:
    """(seconds to the first content chunk of a stream, when it came on time.monotonic), or None.

    The whole stream is then read to its end.
    """
    started = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    first = None
    while line := response.readline():
        if first is None and line.startswith(b"data: {") and _has_content(json.loads(line[6:])):
            arrived = time.monotonic()
            first = (arrived - started, arrived)
    conn.close()
    return first


def _has_content(chunk: dict) -> bool:
    choices = chunk.get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))


def bench_ttfc(url: str, args) -> None:
    # A fake upstream that waits before it streams (its first piece comes one drip after its headers).
    waits = [float(wait) for wait in args.first_byte.split(",")]
    fake = FakeOpenAIServer(stream_delay=args.drip, first_byte_delay=waits[0]).start()
    accounts = seed(61)
    env = _server_env(LLM_PROVIDER="openai", LLM_BASE_URL=fake.base_url, LLM_TIMEOUT_SECONDS="30")
    server = start("deployed", database_url=url, workers=args.ttfc_workers, env=env)
    print(f"  the server: scripts/serve.sh (as make serve runs it), {args.ttfc_workers} process(es)")
    body = {"model": "echo-1", "messages": MESSAGES, "stream": True, "max_tokens": 64}
    fake_port = fake.server_address[1]
    try:
        # The process's first stream pays for imports and the upstream client; then the relay alone:
        # how long after the upstream wrote its first piece the client has it, one stream at a time.
        first_chunk(server.port, "/v1/chat/completions", {"Authorization": f"Bearer {accounts[60][1]}"}, body)
        relays = []
        for _ in range(10):
            got = first_chunk(
                server.port, "/v1/chat/completions", {"Authorization": f"Bearer {accounts[60][1]}"}, body
            )
            if got is not None:
                relays.append(got[1] - fake.first_piece_sent)
        relay = percentile(sorted(relays), 0.5)
        print(
            f"  relay: the first chunk reaches the client {relay * 1000:.2f} ms after the upstream wrote it (target <= 5 ms)"
        )
        for wait, concurrency in ((wait, concurrency) for wait in waits for concurrency in (1, 50)):
            if concurrency == 1:
                fake.first_byte_delay = wait
                print(
                    f"  the model answers {wait:g} s after a request, its first piece {args.drip:g} s later:"
                )
            for name, port, path, auth in (
                ("fake upstream, direct", fake_port, "/v1/chat/completions", lambda i: "Bearer x"),
                ("gateway", server.port, "/v1/chat/completions", lambda i: f"Bearer {accounts[i][1]}"),
            ):
                times, relays, lock = [], [], threading.Lock()

                def one(
                    i,
                    port=port,
                    path=path,
                    auth=auth,
                    times=times,
                    relays=relays,
                    lock=lock,
                    concurrency=concurrency,
                    wait=wait,
                ):
                    # Each stream's own message, so its first piece's send time can be found at the fake.
                    text = f"stream {wait}-{concurrency}-{i}-{port}: {MESSAGES[0]['content']}"
                    own = {**body, "messages": [{"role": "user", "content": text}]}
                    got = first_chunk(port, path, {"Authorization": auth(i)}, own)
                    with lock:
                        if got is not None:
                            times.append(got[0])
                            relays.append(got[1] - fake.first_piece_by_message[text])

                threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrency)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                print(
                    f"  {concurrency:3d} streams, {name:22s} first chunk p50 {percentile(sorted(times), 0.5) * 1000:7.1f} ms"
                    f"  p99 {percentile(sorted(times), 0.99) * 1000:7.1f} ms  ({len(times)}/{concurrency});"
                    f"  after the model's own first byte: p50 {percentile(sorted(relays), 0.5) * 1000:.2f} ms"
                    f"  p99 {percentile(sorted(relays), 0.99) * 1000:.2f} ms",
                    flush=True,
                )
    finally:
        server.stop()
        fake.stop()


def bench_streams(url: str, args) -> None:
    from billing.models import CreditHold, CreditTransaction, LLMCallEvent
    from billing.reconcile import check_ledger

    fake = FakeOpenAIServer(stream_delay=args.drip).start()
    accounts = seed(args.streams)
    env = _server_env(LLM_PROVIDER="openai", LLM_BASE_URL=fake.base_url, LLM_TIMEOUT_SECONDS="60")
    server = start("uvicorn", database_url=url, workers=1, env=env)
    body = {"model": "echo-1", "messages": MESSAGES, "stream": True, "max_tokens": 256}
    pids = lambda: [server.process.pid, *server.worker_pids()]  # noqa: E731 - one process, or its workers
    events_before = LLMCallEvent.objects.filter(purpose="api").count()
    debits_before = CreditTransaction.objects.filter(kind="debit").count()
    try:
        idle = rss_kib(pids())
        peak, done = [idle], threading.Event()

        def sample():
            while not done.is_set():
                peak.append(rss_kib(pids()))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        threads = [
            threading.Thread(
                target=first_chunk,
                args=(server.port, "/v1/chat/completions", {"Authorization": f"Bearer {key}"}, body),
            )
            for _, key in accounts
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        sampler.join()
        wall = time.monotonic() - started
        open_holds = CreditHold.objects.filter(status="held").count()
        events = LLMCallEvent.objects.filter(purpose="api").count() - events_before
        debits = CreditTransaction.objects.filter(kind="debit").count() - debits_before
        print(
            f"  {args.streams} streams in {wall:.1f}s on one uvicorn process: open holds {open_holds}, "
            f"call events {events}, debits {debits}, check_ledger {'clean' if check_ledger().ok else 'NOT CLEAN'}",
        )
        print(
            f"  resident memory: idle {idle / 1024:.0f} MiB, peak {max(peak) / 1024:.0f} MiB, "
            f"{(max(peak) - idle) / args.streams:.0f} KiB per open stream (upstream max open {fake.max_open_streams})"
        )
    finally:
        server.stop()
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="creditdesk_gateway_bench")
    parser.add_argument("--only", choices=["plain", "ttfc", "streams"])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument(
        "--ttfc-workers",
        type=int,
        default=2,
        help="server processes for ttfc (default: make serve's WEB_CONCURRENCY, 2)",
    )
    parser.add_argument("--drip", type=float, default=0.05, help="seconds between the fake model's pieces")
    parser.add_argument(
        "--first-byte",
        default="0.05,0.5",
        help="ttfc: seconds before the fake model answers (its first piece one drip later), comma-separated:"
        " each is measured; 0.5 s is a hosted model's usual wait, 0.05 s lands inside the burst's starts",
    )
    args = parser.parse_args()
    url = fresh_database(args.postgres, args.database)
    import subprocess

    subprocess.run(  # noqa: S603 - our manage.py
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, "SECRET_KEY": "x"},
        check=True,
    )
    setup_django(url)
    print(f"load {os.getloadavg()[0]:.2f}", flush=True)
    for name, bench in (("plain", bench_plain), ("ttfc", bench_ttfc), ("streams", bench_streams)):
        if args.only in (None, name):
            print(name, flush=True)
            bench(url, args)


if __name__ == "__main__":
    main()
