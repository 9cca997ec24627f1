"""Memory: peak RSS growth of the CSV export of the whole ledger and of check_ledger, each in its own process.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/creditdesk_bench SECRET_KEY=bench \
        ALLOWED_HOSTS=testserver LOG_LEVEL=WARNING
    .venv/bin/python bench/bench_memory.py export
    .venv/bin/python bench/bench_memory.py check

`export` requests GET /api/v1/admin/transactions/export.csv through Django's handler (the code a
gunicorn worker runs) and reads the streamed body chunk by chunk, as a client would; `check` runs
billing.reconcile.check_ledger. Peak growth is ru_maxrss after minus before (target < 100 MB).
The floor for the export is the same rows read by psql's COPY ... TO STDOUT, for time only.
"""

import os
import resource
import subprocess
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

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

TARGET_MB = 100


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def export() -> None:
    client = Client()
    client.force_login(get_user_model().objects.get(username="benchstaff"))
    client.get("/api/v1/auth/me")  # import and connect before the baseline
    before = peak_mb()
    started = time.perf_counter()
    response = client.get("/api/v1/admin/transactions/export.csv")
    assert response.status_code == 200 and response.streaming
    lines = size = 0
    for chunk in response.streaming_content:
        lines += chunk.count(b"\n")
        size += len(chunk)
    elapsed = time.perf_counter() - started
    growth = peak_mb() - before
    s = connection.settings_dict
    started = time.perf_counter()
    subprocess.run(
        [
            "psql",
            "-h",
            s["HOST"] or "127.0.0.1",
            "-U",
            s["USER"],
            "-d",
            s["NAME"],
            "-qc",
            "COPY (SELECT t.*, u.username, i.username FROM billing_credittransaction t "
            "JOIN billing_wallet w ON w.id = t.wallet_id JOIN accounts_user u ON u.id = w.user_id "
            "LEFT JOIN accounts_user i ON i.id = t.initiated_by_id ORDER BY t.id) TO STDOUT WITH CSV",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    floor = time.perf_counter() - started
    print(
        f"CSV export: {lines - 1} rows, {size / 1e6:.0f} MB in {elapsed:.1f}s "
        f"(floor, psql COPY: {floor:.1f}s, {elapsed / floor:.1f}x); peak RSS growth {growth:.1f} MB "
        f"(target < {TARGET_MB} MB) -> {'PASS' if growth < TARGET_MB else 'FAIL'}"
    )


def check() -> None:
    from billing.reconcile import check_ledger

    connection.ensure_connection()
    before = peak_mb()
    started = time.perf_counter()
    result = check_ledger()
    elapsed = time.perf_counter() - started
    growth = peak_mb() - before
    print(
        f"check_ledger: {result.wallets} wallets, {result.rows} rows, ok={result.ok} in {elapsed:.1f}s; "
        f"peak RSS growth {growth:.1f} MB (target < {TARGET_MB} MB, bounded) -> "
        f"{'PASS' if growth < TARGET_MB else 'FAIL'}"
    )


if __name__ == "__main__":
    {"export": export, "check": check}[sys.argv[1] if len(sys.argv) > 1 else "export"]()
