"""Where a turn's time goes, on the path a deployment serves plain requests by (Django's WSGI handler).

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/creditdesk_bench SECRET_KEY=bench
    .venv/bin/python bench/turn_profile.py --requests 1000

In process (django.test.Client), one request at a time, default throttles on: for a plain turn and
for GET /api/v1/auth/me, the Python CPU per request (this process), the PostgreSQL CPU per request
(the backend serving this connection, from /proc), and each round trip with its wall time, named
by what it is for. The socket and the server's protocol are not in these figures (bench_server.py has them).
"""

import argparse
import logging
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-not-secret")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DATABASE_POOL_MAX_SIZE", "0")  # one connection, one backend to read

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, reset_queries  # noqa: E402
from django.test import Client  # noqa: E402
from knox.models import AuthToken  # noqa: E402

from billing import services  # noqa: E402
from sessions_app.services import create_session  # noqa: E402

# What each statement is for, by the first table or CTE it names.
PURPOSES = [
    (r"knox_authtoken", "token (authentication)"),
    (r"rate_before", "session, history and the turn throttle (one statement)"),
    (r"expired_holds", "reservation (hold, wallet, price)"),
    (r"^BEGIN", "BEGIN"),
    (
        r"call_event.*moved_session",
        "charge with the turn's rows (event, hold, wallet, debit, rollups; messages, turn)",
    ),
    (r"call_event", "charge (event, hold, wallet, debit, rollups)"),
    (r"moved_session", "the turn's rows (messages, turn, calls)"),
    (r"^COMMIT", "COMMIT"),
    (r"accounts_user|billing_wallet", "the user and wallet (auth/me)"),
]


def purpose(sql: str) -> str:
    for pattern, name in PURPOSES:
        if re.search(pattern, sql.strip(), re.IGNORECASE | re.DOTALL):
            return name
    return sql.strip()[:60]


def backend_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile(name: str, requests: int, send) -> None:
    for _ in range(50):  # warm: prepared statements, caches
        send()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    db_before, py_before, wall_before = backend_cpu_seconds(backend), time.process_time(), time.perf_counter()
    for _ in range(requests):
        send()
    wall = (time.perf_counter() - wall_before) / requests * 1000
    python = (time.process_time() - py_before) / requests * 1000
    database = (backend_cpu_seconds(backend) - db_before) / requests * 1000
    print(f"{name}: {wall:.2f} ms a request: Python CPU {python:.2f} ms, PostgreSQL CPU {database:.2f} ms")
    # Then the round trips, named, from Django's query log records (their `duration`, unrounded; the
    # log is on for this pass only: it costs a little).
    trips: dict[str, list[float]] = defaultdict(list)
    sample = min(requests, 200)

    class Collect(logging.Handler):
        def emit(self, record):
            trips[purpose(record.sql)].append(record.duration)

    log = logging.getLogger("django.db.backends")
    handler, level, propagate = Collect(), log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    connection.force_debug_cursor = True
    try:
        for _ in range(sample):
            send()
            reset_queries()
    finally:
        connection.force_debug_cursor = False
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate
    for what, seconds in trips.items():
        per = len(seconds) / sample
        print(f"    {per:4.1f} x  {sum(seconds) / len(seconds) * 1000:6.3f} ms  {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    user = get_user_model().objects.filter(username__startswith="user").order_by("id")[20]
    staff = get_user_model().objects.get(username="benchstaff")
    services.grant(user=user, amount="1000", reason="bench funds", initiated_by=staff)
    token = AuthToken.objects.create(user=user)[1]
    session = create_session(owner=user, title="profile")
    client = Client(headers={"Authorization": f"Token {token}"})
    url = f"/api/v1/sessions/{session.pk}/turns/"
    # The default turn rate (60/minute) would refuse most of these: one user here stands for many.
    from django.conf import settings

    settings.THROTTLE_TURN_RATE = "1000000/minute"

    def turn():
        assert client.post(url, {"content": "hello"}, content_type="application/json").status_code == 201

    def me():
        assert client.get("/api/v1/auth/me").status_code == 200

    profile("POST turn", args.requests, turn)
    profile("GET auth/me", args.requests, me)


if __name__ == "__main__":
    main()
