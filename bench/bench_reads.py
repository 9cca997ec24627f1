"""Reads at scale, in server time: the usage summary, the admin pages and the user's ledger, each against its floor.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/creditdesk_bench SECRET_KEY=bench \
        ALLOWED_HOSTS=testserver LOG_LEVEL=WARNING
    .venv/bin/python bench/bench_reads.py --only usage,admin,ledger --runs 20

Each page is requested through Django's test client (the whole stack but the socket: middleware,
auth, DRF or the admin, templates) with its queries captured. The floor is the same SQL, captured
from the request, run again by hand on a plain psycopg connection: what PostgreSQL alone needs to
answer the page.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-not-secret")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")  # the test client speaks plain HTTP

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from bench._stats import summary  # noqa: E402


def _dsn() -> str:
    s = connection.settings_dict
    return f"host={s['HOST'] or '127.0.0.1'} port={s['PORT'] or 5432} dbname={s['NAME']} user={s['USER']}"


class Bench:
    def __init__(self, runs: int):
        self.runs = runs
        self.raw = psycopg.connect(_dsn(), autocommit=True)
        self.results = []

    def page(self, name: str, client: Client, url: str, *, target_ms: float, max_queries: int | None = None):
        """Time `url` `runs` times (after a warm-up), then its captured SQL by hand; print one line."""
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
            if response.streaming:
                b"".join(response.streaming_content)
        queries = [q["sql"] for q in captured.captured_queries]
        times = []
        for _ in range(self.runs):
            started = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - started)
        floor_times = []
        for _ in range(self.runs):
            started = time.perf_counter()
            with self.raw.cursor() as cur:
                for sql in queries:
                    cur.execute(sql.encode())
                    if cur.description:
                        cur.fetchall()
            floor_times.append(time.perf_counter() - started)
        s, f = summary(times), summary(floor_times)
        ok = s.p50 * 1000 <= target_ms and (max_queries is None or len(queries) <= max_queries)
        line = (
            f"{name:44s} p50 {s.p50 * 1000:8.2f} ms  p99 {s.p99 * 1000:8.2f} ms  queries {len(queries):2d}"
            f"  floor p50 {f.p50 * 1000:8.2f} ms  ratio {s.p50 / f.p50 if f.p50 else 0:5.2f}x"
            f"  target < {target_ms:g} ms{f', < {max_queries} queries' if max_queries else ''}"
            f"  {'PASS' if ok else 'FAIL'}"
        )
        print(line, flush=True)
        self.results.append(line)
        return response, queries


def bench_usage(bench: Bench, staff) -> None:
    from reporting import selectors

    client = Client()
    client.force_login(staff)
    base = "/api/v1/admin/usage/summary"
    cases = [
        ("usage 30 days, bucket=day", f"{base}?bucket=day"),
        ("usage 30 days, bucket=week", f"{base}?bucket=week"),
        ("usage 30 days, bucket=month", f"{base}?bucket=month"),
        ("usage full year, bucket=day", f"{base}?bucket=day&start={{year_start}}&end={{today}}"),
        ("usage full year, bucket=week", f"{base}?bucket=week&start={{year_start}}&end={{today}}"),
        ("usage full year, bucket=month", f"{base}?bucket=month&start={{year_start}}&end={{today}}"),
        ("usage 30 days, one user, bucket=day", f"{base}?bucket=day&user_id={{user_id}}"),
    ]
    from datetime import timedelta

    today = selectors.default_range()[1]
    params = {
        "today": today.isoformat(),
        "year_start": (today - timedelta(days=365)).isoformat(),
        "user_id": get_user_model().objects.get(username="user1").pk,
    }
    for name, url in cases:
        bench.page(name, client, url.format(**params), target_ms=100)


def bench_admin(bench: Bench, staff) -> None:
    client = Client()
    client.force_login(staff)
    some_wallet = connection.cursor()
    some_wallet.execute(
        "SELECT w.id FROM billing_wallet w JOIN accounts_user u ON u.id = w.user_id "
        "WHERE u.username = 'user4242'"
    )
    wallet_id = some_wallet.fetchone()[0]
    pages = [
        ("admin ledger changelist", "/admin/billing/credittransaction/"),
        ("admin ledger filtered (kind=grant)", "/admin/billing/credittransaction/?kind__exact=grant"),
        ("admin ledger filtered (one wallet)", f"/admin/billing/credittransaction/?wallet={wallet_id}"),
        ("admin ledger search (username)", "/admin/billing/credittransaction/?q=user4242"),
        ("admin wallet changelist", "/admin/billing/wallet/"),
        ("admin wallet search", "/admin/billing/wallet/?q=user4242"),
        ("admin wallet change page", f"/admin/billing/wallet/{wallet_id}/change/"),
        ("admin events changelist", "/admin/billing/llmcallevent/"),
        ("admin daily usage (30 days)", "/admin/reporting/dailyusage/"),
    ]
    for name, url in pages:
        bench.page(name, client, url, target_ms=300, max_queries=12)


def bench_ledger(bench: Bench) -> None:
    heavy = get_user_model().objects.get(username="heavy")
    client = Client()
    client.force_login(heavy)
    url = "/api/v1/users/me/transactions"
    first, _ = bench.page("user ledger page 1 (100k rows)", client, url, target_ms=50)
    next_url = first.json()["next"]
    for _ in range(498):  # follow the cursor to page 500
        next_url = client.get(next_url).json()["next"]
    bench.page("user ledger page 500 (100k rows)", client, next_url, target_ms=50)
    bench.page("user wallet", client, "/api/v1/users/me/wallet", target_ms=50)
    bench.page("auth/me", client, "/api/v1/auth/me", target_ms=50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--only", default="usage,admin,ledger")
    args = parser.parse_args()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM billing_llmcallevent), (SELECT count(*) FROM billing_credittransaction)"
        )
        events, ledger = cur.fetchone()
    print(
        f"database {connection.settings_dict['NAME']}: {events} events, {ledger} ledger rows; "
        f"load {os.getloadavg()[0]:.2f}; {args.runs} runs per page",
        flush=True,
    )
    bench = Bench(args.runs)
    staff = get_user_model().objects.get(username="benchstaff")
    only = set(args.only.split(","))
    if "usage" in only:
        bench_usage(bench, staff)
    if "admin" in only:
        bench_admin(bench, staff)
    if "ledger" in only:
        bench_ledger(bench)


if __name__ == "__main__":
    main()
