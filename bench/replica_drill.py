"""The read replica against a real streaming standby: where reads go when it is ok, lagging, stopped, back.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5491/creditdesk \\
        DATABASE_REPLICA_URL=postgres://postgres@127.0.0.1:5492/creditdesk SECRET_KEY=bench
    .venv/bin/python bench/replica_drill.py --standby-data /path/to/standby --pg-bin /usr/lib/postgresql/15/bin

The primary and the standby are any pair made with `pg_basebackup -R` (scripts/fleet.sh makes one);
the database is migrated and seeded (bench/seed.py). Runs as the user that owns the standby's data
folder (or root: it then uses `runuser -u postgres`). Each step: the staff usage summary through
Django's test client, the queries each alias ran, /api/v1/health's `replica`, and the router's log
lines. Lag is made by pausing the standby's replay (pg_wal_replay_pause) while the primary writes.
"""

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("DATABASE_REPLICA_MAX_LAG", "2")
os.environ.setdefault("DATABASE_REPLICA_CHECK_SECONDS", "1")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connections  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from billing import services  # noqa: E402
from billing.models import ModelPrice  # noqa: E402
from core import replica  # noqa: E402


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--standby-data", required=True)
    parser.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin")
    args = parser.parse_args()
    if not replica.configured():
        sys.exit("Set DATABASE_REPLICA_URL to the standby.")
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    pg_ctl = [*as_owner, f"{args.pg_bin}/pg_ctl", "-D", args.standby_data, "-w"]
    lines = Lines()
    logging.getLogger("core.replica").addHandler(lines)
    staff = get_user_model().objects.filter(is_staff=True).first()
    user = get_user_model().objects.filter(is_staff=False).first()
    price = ModelPrice.objects.filter(active=True).first()
    client = Client()
    client.force_login(staff)

    def step(name: str) -> None:
        logged = len(lines.messages)
        captured = {alias: CaptureQueriesContext(connections[alias]) for alias in ("default",)}
        for context in captured.values():
            context.__enter__()
        started = time.perf_counter()
        response = client.get("/api/v1/admin/usage/summary?bucket=day")
        elapsed = (time.perf_counter() - started) * 1000
        for context in captured.values():
            context.__exit__(None, None, None)
        on_primary = sum("billing_usage" in q["sql"] for q in captured["default"].captured_queries)
        health = client.get("/api/v1/health").json().get("replica")
        print(
            f"{name:38s} summary {response.status_code} in {elapsed:6.1f} ms, "
            f"usage queries on the primary: {on_primary}; health replica: {health}"
        )
        for message in lines.messages[logged:]:
            print(f"{'':38s} log: {message}")

    def settle():
        time.sleep(1.2)  # past DATABASE_REPLICA_CHECK_SECONDS

    step("1. standby streaming")
    with connections["replica"].cursor() as cursor:
        cursor.execute("SELECT pg_wal_replay_pause()")
    services.charge(user=user, price=price, provider="echo", input_tokens=10, output_tokens=10)
    time.sleep(3)
    settle()
    step("2. replay paused, primary wrote 3 s ago")
    with connections["replica"].cursor() as cursor:
        cursor.execute("SELECT pg_wal_replay_resume()")
    time.sleep(0.5)
    settle()
    step("3. replay resumed")
    subprocess.run([*pg_ctl, "-m", "fast", "stop"], check=True, capture_output=True)
    settle()
    step("4. standby stopped")
    step("5. standby still stopped (no new log)")
    subprocess.run(
        [*pg_ctl, "-l", f"{args.standby_data}/../standby.log", "start"], check=True, capture_output=True
    )
    settle()
    step("6. standby started again")


if __name__ == "__main__":
    main()
