"""Seed a bench database fast with COPY: users and wallets, a year of LLM call events, a chained ledger.

Usage (a separate database, never the test ones):
    createdb -h 127.0.0.1 -U postgres creditdesk_bench
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/creditdesk_bench SECRET_KEY=bench
    .venv/bin/python manage.py migrate
    .venv/bin/python bench/seed.py --users 10000 --events 1000000 --ledger 1000000

Rows are generated in Python as a stream and written with psycopg 3 `cursor.copy()`, secondary
indexes dropped during the load and rebuilt after (several times faster than inserting through them).
The ledger is consistent: each wallet's rows chain `balance_after` from 0, each ok call that cost
something has its debit (linked, after the `--ledger` rows: the ledger holds both), and wallet
balances are set from the sums, so `check_ledger` passes. One user (`heavy`) owns `--heavy-rows`
ledger rows. With `--skip-ledger` (an events-only database for the reports) there are no debits, and
`check_ledger` would name every priced call: it is not for such a database.
"""

import argparse
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-not-secret")

import django  # noqa: E402

django.setup()

from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import connection  # noqa: E402

from billing.models import CreditTransaction, LLMCallEvent, ModelPrice, Wallet  # noqa: E402
from billing.services.lots import open_opening_lots  # noqa: E402

USER = "accounts_user"
PASSWORD = "bench-password"  # noqa: S105 - bench data only
MODELS = {
    # model: (input per 1k, output per 1k)
    "echo-1": (Decimal("0.500000"), Decimal("1.500000")),
    "gpt-4.1-mini": (Decimal("0.400000"), Decimal("1.600000")),
    "gpt-4.1": (Decimal("2.000000"), Decimal("8.000000")),
}
BLOCK = 20_000  # rows per COPY write


def q6(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.000001"))


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _secondary_indexes(table: str) -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i "
            "JOIN pg_class c ON c.relname = i.indexname JOIN pg_index x ON x.indexrelid = c.oid "
            "WHERE i.tablename = %s AND NOT x.indisprimary AND NOT x.indisunique",
            [table],
        )
        return cursor.fetchall()


class IndexesDropped:
    """Drop a table's plain secondary indexes for a bulk load, rebuild them on exit."""

    def __init__(self, table: str):
        self.table = table
        self.indexes: list[tuple[str, str]] = []

    def __enter__(self):
        self.indexes = _secondary_indexes(self.table)
        with connection.cursor() as cursor:
            for name, _ in self.indexes:
                cursor.execute(f'DROP INDEX "{name}"')
        return self

    def __exit__(self, *exc):
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '512MB'")
            for _, definition in self.indexes:
                # A partitioned table's index reads "ON ONLY" in pg_indexes: made so, it would cover no
                # partition (and stay INVALID). Without ONLY it is built on every partition too.
                cursor.execute(definition.replace(" ON ONLY ", " ON ", 1))
            cursor.execute(
                "SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid"
                " JOIN pg_class t ON t.oid = x.indrelid WHERE t.relname = %s AND NOT x.indisvalid",
                [self.table],
            )
            invalid = [name for (name,) in cursor.fetchall()]
        if invalid:
            raise RuntimeError(f"indexes on {self.table} left invalid after the load: {', '.join(invalid)}")
        _say(f"  rebuilt {len(self.indexes)} indexes on {self.table} in {time.monotonic() - started:.1f}s")


def copy_lines(table: str, columns: list[str], lines) -> int:
    """COPY tab-separated text lines into `table`; returns the row count."""
    n = 0
    with connection.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            buffer = []
            for line in lines:
                buffer.append(line)
                if len(buffer) >= BLOCK:
                    copy.write("".join(buffer))
                    n += len(buffer)
                    buffer.clear()
            if buffer:
                copy.write("".join(buffer))
                n += len(buffer)
    return n


def seed_prices(now: datetime) -> None:
    for model, (inp, out) in MODELS.items():
        ModelPrice.objects.update_or_create(
            model=model, defaults={"input_price_per_1k": inp, "output_price_per_1k": out, "active": True}
        )


def seed_users(count: int, now: datetime) -> list[int]:
    """`count` users (user0..), plus `benchstaff` (superuser) and `heavy`; one password hash for all."""
    hashed = make_password(PASSWORD)
    joined = now.isoformat()

    def lines():
        for i in range(count):
            yield f"{hashed}\tf\tuser{i}\t\t\tuser{i}@bench.example\tf\tt\t{joined}\n"
        yield f"{hashed}\tt\tbenchstaff\t\t\tstaff@bench.example\tt\tt\t{joined}\n"
        yield f"{hashed}\tf\theavy\t\t\theavy@bench.example\tf\tt\t{joined}\n"

    columns = [
        "password",
        "is_superuser",
        "username",
        "first_name",
        "last_name",
        "email",
        "is_staff",
        "is_active",
        "date_joined",
    ]
    copy_lines(USER, columns, lines())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Wallet._meta.db_table} (user_id, balance, held, enforcement, created_at, updated_at) "  # noqa: S608
            f"SELECT id, 0, 0, 'default', %s, %s FROM {USER} u "
            f"WHERE NOT EXISTS (SELECT 1 FROM {Wallet._meta.db_table} w WHERE w.user_id = u.id)",
            [now, now],
        )
        cursor.execute(f"SELECT id FROM {USER} WHERE username LIKE 'user%%' ORDER BY id")  # noqa: S608
        return [r[0] for r in cursor.fetchall()]


def seed_events(count: int, user_ids: list[int], now: datetime, rng: random.Random) -> int:
    """`count` events spread over the year before `now`; each user mostly on one model; 2% failed."""
    year = 365 * 86400
    start = now - timedelta(seconds=year)
    models = list(MODELS)
    favourite = {uid: models[uid % len(models)] for uid in user_ids}

    def lines():
        for _ in range(count):
            uid = rng.choice(user_ids)
            model = favourite[uid] if rng.random() < 0.8 else rng.choice(models)
            inp, out = MODELS[model]
            when = (start + timedelta(seconds=rng.random() * year)).isoformat()
            shadow = "t" if rng.random() < 0.01 else "f"
            if rng.random() < 0.02:
                yield f"{uid}\t{model}\techo\t0\t0\t0\t{inp}\t{out}\terror\tProviderTimeout: bench\t30000\t{shadow}\t{when}\n"
                continue
            tin, tout = rng.randint(20, 2000), rng.randint(10, 1000)
            cost = q6((tin * inp + tout * out) / 1000)
            yield f"{uid}\t{model}\techo\t{tin}\t{tout}\t{cost}\t{inp}\t{out}\tok\t\t{rng.randint(50, 3000)}\t{shadow}\t{when}\n"

    columns = [
        "user_id",
        "model",
        "provider",
        "input_tokens",
        "output_tokens",
        "cost",
        "input_price_per_1k",
        "output_price_per_1k",
        "status",
        "error",
        "latency_ms",
        "shadow_refusal",
        "created_at",
    ]
    with IndexesDropped(LLMCallEvent._meta.db_table):
        return copy_lines(LLMCallEvent._meta.db_table, columns, lines())


def seed_ledger(count: int, heavy_rows: int, now: datetime, rng: random.Random) -> int:
    """`heavy_rows` rows for `heavy`, the rest spread over user wallets; each wallet chained from 0."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT w.id, u.username FROM {Wallet._meta.db_table} w JOIN {USER} u ON u.id = w.user_id "  # noqa: S608
            "WHERE u.username LIKE 'user%%' OR u.username = 'heavy' ORDER BY w.id"
        )
        wallets = cursor.fetchall()
        cursor.execute(f"SELECT id FROM {USER} WHERE username = 'benchstaff'")  # noqa: S608
        staff_id = cursor.fetchone()[0]
    heavy = next(wid for wid, name in wallets if name == "heavy")
    others = [wid for wid, name in wallets if name != "heavy"]
    per_wallet = max(1, (count - heavy_rows) // len(others))
    plan = [(heavy, heavy_rows)] + [(wid, per_wallet) for wid in others]

    def wallet_lines(wallet_id: int, rows: int):
        balance = Decimal(0)
        step = timedelta(seconds=max(1, int(365 * 86400 / rows)))
        when = now - step * rows
        for i in range(rows):
            when += step
            if i % 25 == 0:
                amount = Decimal(rng.randint(5, 50))
                balance += amount
                yield (
                    f"{wallet_id}\tgrant\t{amount:.6f}\t{balance:.6f}\tTop-up\t{staff_id}\t{when.isoformat()}\n"
                )
            else:
                amount = q6(Decimal(rng.randint(1, 2_000_000)) / Decimal(1_000_000))
                balance -= amount
                yield (
                    f"{wallet_id}\tdebit\t{-amount:.6f}\t{balance:.6f}\techo-1: bench turn\t\\N\t{when.isoformat()}\n"
                )

    def lines():
        for wallet_id, rows in plan:
            yield from wallet_lines(wallet_id, rows)

    columns = ["wallet_id", "kind", "amount", "balance_after", "reason", "initiated_by_id", "created_at"]
    with IndexesDropped(CreditTransaction._meta.db_table):
        n = copy_lines(CreditTransaction._meta.db_table, columns, lines())
    n += debit_the_calls()
    with connection.cursor() as cursor:
        # Wallet balances from the ledger sums (billing_wallet, not the append-only ledger).
        cursor.execute(
            f"UPDATE {Wallet._meta.db_table} w SET balance = s.total FROM ("  # noqa: S608
            f"SELECT wallet_id, SUM(amount) AS total FROM {CreditTransaction._meta.db_table} GROUP BY wallet_id"
            ") s WHERE s.wallet_id = w.id"
        )
    # Each wallet's balance as its opening credit lot (or debt), as the lots migration does.
    open_opening_lots()
    return n


def debit_the_calls() -> int:
    """One debit for each seeded ok call that cost something, linked to it, as the charge writes them
    (check_ledger holds each such call to its debit), chained after the wallet's seeded rows."""
    ledger, events, wallets = (
        CreditTransaction._meta.db_table,
        LLMCallEvent._meta.db_table,
        Wallet._meta.db_table,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {ledger} (id, wallet_id, kind, amount, balance_after, reason, initiated_by_id,
                llm_call_id, created_at)
            -- ids in the order of the chain: the subquery's rows, in (wallet, call) order
            SELECT nextval(pg_get_serial_sequence('{ledger}', 'id')), wallet_id, 'debit', -cost,
                balance_after, 'bench call', NULL, call_id, created_at
            FROM (
                -- each wallet's seeded sum less the running cost of its user's calls
                SELECT w.id AS wallet_id, e.id AS call_id, e.cost, e.created_at,
                    coalesce(seeded.total, 0) - sum(e.cost) OVER (PARTITION BY w.id ORDER BY e.id)
                        AS balance_after
                FROM {events} e
                JOIN {wallets} w ON w.user_id = e.user_id
                LEFT JOIN (SELECT wallet_id, sum(amount) AS total FROM {ledger} GROUP BY wallet_id) seeded
                    ON seeded.wallet_id = w.id
                WHERE e.status = 'ok' AND e.cost > 0
                ORDER BY w.id, e.id
            ) calls
            """  # noqa: S608
        )
        return cursor.rowcount


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--ledger", type=int, default=1_000_000)
    parser.add_argument("--heavy-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-ledger", action="store_true", help="events only (e.g. a second events DB)")
    args = parser.parse_args()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {USER}")  # noqa: S608
        if cursor.fetchone()[0]:
            raise SystemExit("This database already has users: seed a freshly migrated bench database.")
    rng = random.Random(args.seed)
    now = datetime.now(UTC)
    total = time.monotonic()
    seed_prices(now)
    started = time.monotonic()
    user_ids = seed_users(args.users, now)
    _say(f"users+wallets: {len(user_ids)} in {time.monotonic() - started:.1f}s")
    started = time.monotonic()
    n = seed_events(args.events, user_ids, now, rng)
    _say(f"events: {n} in {time.monotonic() - started:.1f}s")
    if not args.skip_ledger:
        started = time.monotonic()
        n = seed_ledger(args.ledger, args.heavy_rows, now, rng)
        _say(f"ledger: {n} rows in {time.monotonic() - started:.1f}s")
    started = time.monotonic()
    try:
        from billing.rollup import rebuild_usage_rollup
    except ImportError:  # before the rollup exists (a baseline run)
        rebuild_usage_rollup = None
    if rebuild_usage_rollup is not None:
        rows = rebuild_usage_rollup()
        _say(f"usage rollup: {rows} rows in {time.monotonic() - started:.1f}s")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    _say(f"done in {time.monotonic() - total:.1f}s (login: benchstaff / {PASSWORD})")


if __name__ == "__main__":
    main()
