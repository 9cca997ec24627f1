"""Billing on the turn path: charge() and reserve()+settle() timed against hand-written SQL (the floor).

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/creditdesk_bench SECRET_KEY=bench
    .venv/bin/python bench/bench_billing.py --iterations 2000
    .venv/bin/python bench/bench_billing.py --iterations 2000 --lots 1    # each wallet with 1 live lot
    .venv/bin/python bench/bench_billing.py --iterations 2000 --lots 50   # each wallet with 50 live lots

With credit lots (billing_creditlot present), the floor also burns the lots by hand: one statement
that orders the wallet's live lots, takes the cost from the first ones and records the allocations.
`--lots N` first tops each bench wallet up to N live lots (grants of mixed priority, category and
expiry, through the service); without it a wallet has the one lot its opening balance became.

The floor writes the same rows as the service, in one transaction, with hand-written SQL on a plain
psycopg connection: one UPDATE ... RETURNING on the wallet plus the inserts (and, for a turn, the
hold opened then closed). Both sides run interleaved in rounds over the same 100 wallets, so load on
the machine skews them alike. Prints ops/s, p50, p99 and the ratio of medians (service / floor).
"""

import argparse
import os
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

import psycopg  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402

from bench._stats import summary  # noqa: E402
from billing import services  # noqa: E402
from billing.models import ModelPrice  # noqa: E402
from billing.rollup import SHARDS  # noqa: E402

IN_TOKENS, OUT_TOKENS = 120, 80


def _dsn() -> str:
    settings = connection.settings_dict
    return (
        f"host={settings['HOST'] or '127.0.0.1'} port={settings['PORT'] or 5432} "
        f"dbname={settings['NAME']} user={settings['USER']}"
    )


def _has_table(name: str) -> bool:
    return name in connection.introspection.table_names()


# The burn as the best hand-written SQL would do it, after the wallet's UPDATE took its lock: the
# live lots in burn order with a running sum, the first ones taken, each part recorded.
_FLOOR_BURN = """
    WITH live_lots AS (
        SELECT id, remaining,
            sum(remaining) OVER (
                ORDER BY priority, expires_at NULLS LAST, category = 'paid', effective_at, id
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
            ) - remaining AS before_it
        FROM billing_creditlot
        WHERE wallet_id = %(wallet_id)s AND remaining > 0 AND (expires_at IS NULL OR expires_at > %(now)s)
    ),
    taken AS (
        SELECT id, least(remaining, %(cost)s - before_it) AS amount FROM live_lots WHERE before_it < %(cost)s
    ),
    burned AS (
        UPDATE billing_creditlot lot SET remaining = lot.remaining - taken.amount
        FROM taken WHERE lot.id = taken.id
        RETURNING lot.id, taken.amount
    )
    INSERT INTO billing_lotallocation (transaction_id, lot_id, amount)
    SELECT %(debit_id)s, id, amount FROM burned
    RETURNING amount
"""
# What no live lot covered (only when the lots ran dry): the debt and its allocation.
_FLOOR_DEBT = """
    WITH debt AS (UPDATE billing_wallet SET debt = debt + %(rest)s WHERE id = %(wallet_id)s)
    INSERT INTO billing_lotallocation (transaction_id, lot_id, amount) VALUES (%(debit_id)s, NULL, %(rest)s)
"""


def top_up_lots(users, lots: int) -> None:
    """Give each wallet `lots` live lots (grants of mixed terms), so the burn orders that many."""
    from datetime import UTC, datetime, timedelta

    from billing.models import CreditLot, Wallet
    from billing.services.ledger import append

    later = datetime.now(UTC) + timedelta(days=365)
    for user in users:
        # Lots a bench run cannot empty count; a small opening lot would run dry mid-run (then debt).
        have = CreditLot.objects.filter(wallet__user=user, remaining__gt=100).count()
        for n in range(have, lots):
            debt = Wallet.objects.values_list("debt", flat=True).get(user=user)  # paid first
            append(
                user_id=user.pk,
                kind="grant",
                amount=Decimal("1000") + debt,
                reason="bench lots",
                priority=n % 7 * 10,
                category="paid" if n % 2 else "promotional",
                expires_at=later + timedelta(hours=n) if n % 3 else None,
            )


class Floor:
    """The same rows written by hand: the lower bound PostgreSQL and the driver set on this machine."""

    def __init__(self, price: ModelPrice):
        self.conn = psycopg.connect(_dsn(), autocommit=True)
        self.price = price
        self.rollup = _has_table("billing_usagedaily")
        self.lots = _has_table("billing_creditlot")
        self.day_shards = _has_table("billing_usagedayshard")  # and the users' day bitmaps

    def _event_and_debit(self, cur, user_id: int, now: datetime, cost: Decimal, released: Decimal, hold_id):
        p = self.price
        cur.execute(
            "INSERT INTO billing_llmcallevent (user_id, model, provider, input_tokens, output_tokens, cost, "
            "input_price_per_1k, output_price_per_1k, status, error, latency_ms, shadow_refusal, created_at) "
            "VALUES (%s, %s, 'echo', %s, %s, %s, %s, %s, 'ok', '', 0, false, %s) RETURNING id",
            [user_id, p.model, IN_TOKENS, OUT_TOKENS, cost, p.input_price_per_1k, p.output_price_per_1k, now],
        )
        event_id = cur.fetchone()[0]
        if hold_id is not None:
            cur.execute(
                "UPDATE billing_credithold SET status = 'settled', closed_at = %s, llm_call_id = %s "
                "WHERE id = %s AND status = 'held' RETURNING amount",
                [now, event_id, hold_id],
            )
            released = cur.fetchone()[0]
        cur.execute(
            "UPDATE billing_wallet SET balance = balance + %s, held = held - %s, updated_at = %s "
            "WHERE user_id = %s RETURNING id, balance",
            [-cost, released, now, user_id],
        )
        wallet_id, balance = cur.fetchone()
        cur.execute(
            "INSERT INTO billing_credittransaction (wallet_id, kind, amount, balance_after, reason, "
            "initiated_by_id, llm_call_id, idempotency_key, created_at) "
            "VALUES (%s, 'debit', %s, %s, %s, NULL, %s, NULL, %s) RETURNING id",
            [wallet_id, -cost, balance, "bench", event_id, now],
        )
        if self.lots:
            debit_id = cur.fetchone()[0]
            params = {"wallet_id": wallet_id, "now": now, "cost": cost, "debit_id": debit_id}
            cur.execute(_FLOOR_BURN, params)
            rest = cost - sum((amount for (amount,) in cur.fetchall()), Decimal(0))
            if rest > 0:
                cur.execute(_FLOOR_DEBT, {**params, "rest": rest})
        if self.rollup:
            self._rollup(cur, user_id, now.date(), cost)

    def _rollup(self, cur, user_id: int, day, cost: Decimal) -> None:
        """The (day, user, model) row; on the user's first call of the day, the day's bits; the shard row."""
        cur.execute(
            "INSERT INTO billing_usagedaily AS r (day, user_id, model, calls, failed_calls, input_tokens, "
            "output_tokens, cost, shadow_refusals) VALUES (%s, %s, %s, 1, 0, %s, %s, %s, 0) "
            "ON CONFLICT (day, user_id, model) DO UPDATE SET calls = r.calls + 1, "
            "input_tokens = r.input_tokens + EXCLUDED.input_tokens, "
            "output_tokens = r.output_tokens + EXCLUDED.output_tokens, cost = r.cost + EXCLUDED.cost "
            "RETURNING calls",
            [day, user_id, self.price.model, IN_TOKENS, OUT_TOKENS, cost],
        )
        if not self.day_shards:
            return
        new_user = 0
        if cur.fetchone()[0] == 1:
            cur.execute(
                "INSERT INTO billing_usageusermonth AS t (month, user_id, days) VALUES (%s, %s, %s) "
                "ON CONFLICT (month, user_id) DO UPDATE SET days = t.days | EXCLUDED.days "
                "WHERE (t.days & EXCLUDED.days) = 0 RETURNING 1",
                [day.replace(day=1), user_id, 1 << (day.day - 1)],
            )
            if cur.fetchone() is not None:
                new_user = 1
                cur.execute(
                    "INSERT INTO billing_usageuserweek AS t (week, user_id, days) VALUES (%s, %s, %s) "
                    "ON CONFLICT (week, user_id) DO UPDATE SET days = t.days | EXCLUDED.days",
                    [day - timedelta(days=day.weekday()), user_id, 1 << day.weekday()],
                )
        cur.execute(
            "INSERT INTO billing_usagedayshard AS t (day, shard, calls, failed_calls, input_tokens, "
            "output_tokens, cost, shadow_refusals, users) VALUES (%s, %s, 1, 0, %s, %s, %s, 0, %s) "
            "ON CONFLICT (day, shard) DO UPDATE SET calls = t.calls + 1, "
            "input_tokens = t.input_tokens + EXCLUDED.input_tokens, "
            "output_tokens = t.output_tokens + EXCLUDED.output_tokens, cost = t.cost + EXCLUDED.cost, "
            "users = t.users + EXCLUDED.users",
            [day, user_id % SHARDS, IN_TOKENS, OUT_TOKENS, cost, new_user],
        )

    def charge(self, user_id: int, cost: Decimal) -> None:
        now = datetime.now(UTC)
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._event_and_debit(cur, user_id, now, cost, Decimal(0), None)

    def reserve(self, user_id: int, amount: Decimal) -> int:
        """One statement, as the best hand-written reserve would be: expire, hold, insert."""
        now = datetime.now(UTC)
        with self.conn.cursor() as cur:
            cur.execute(
                "WITH w AS (UPDATE billing_wallet SET held = held + %s, updated_at = %s "
                "WHERE user_id = %s RETURNING id) "
                "INSERT INTO billing_credithold (wallet_id, amount, status, shadow_refusal, created_at, "
                "expires_at) SELECT id, %s, 'held', false, %s, %s FROM w RETURNING id",
                [amount, now, user_id, amount, now, now + timedelta(seconds=600)],
            )
            return cur.fetchone()[0]

    def settle(self, user_id: int, hold_id: int, cost: Decimal) -> None:
        now = datetime.now(UTC)
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._event_and_debit(cur, user_id, now, cost, Decimal(0), hold_id)


def _live_lots(users) -> str:
    if not _has_table("billing_creditlot"):
        return "no lots"
    from django.db.models import Count

    from billing.models import CreditLot

    counts = (
        CreditLot.objects.filter(wallet__user__in=users, remaining__gt=0)
        .values("wallet_id")
        .annotate(n=Count("id"))
        .values_list("n", flat=True)
    )
    counts = list(counts) + [0] * (len(users) - len(counts))  # wallets with none (in debt) count too
    return f"{min(counts, default=0)}-{max(counts, default=0)} live lots per wallet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--wallets", type=int, default=100)
    parser.add_argument("--lots", type=int, default=0, help="top each wallet up to this many live lots first")
    args = parser.parse_args()
    users = list(get_user_model().objects.filter(username__startswith="user").order_by("id")[: args.wallets])
    if args.lots:
        top_up_lots(users, args.lots)
    lots_at_start = _live_lots(users)
    price = ModelPrice.objects.get(model="echo-1")
    cost = services.compute_cost(price=price, input_tokens=IN_TOKENS, output_tokens=OUT_TOKENS)
    estimate = services.compute_cost(price=price, input_tokens=IN_TOKENS, output_tokens=1024)
    floor = Floor(price)
    timings = {"charge": [], "floor charge": [], "reserve+settle": [], "floor reserve+settle": []}

    def timed(name, fn):
        started = time.perf_counter()
        fn()
        timings[name].append(time.perf_counter() - started)

    def service_turn(user):
        reservation = services.reserve(user=user, amount=estimate)
        services.charge(
            hold=reservation.hold,
            user=user,
            price=price,
            provider="echo",
            input_tokens=IN_TOKENS,
            output_tokens=OUT_TOKENS,
        )

    def floor_turn(user):
        hold_id = floor.reserve(user.pk, estimate)
        floor.settle(user.pk, hold_id, cost)

    warmup = 50
    for i in range(args.iterations + warmup):
        user = users[i % len(users)]
        # Alternate which side goes first so neither always runs on a warmer cache.
        pairs = [
            (
                "charge",
                lambda u=user: services.charge(
                    user=u, price=price, provider="echo", input_tokens=IN_TOKENS, output_tokens=OUT_TOKENS
                ),
            ),
            ("floor charge", lambda u=user: floor.charge(u.pk, cost)),
            ("reserve+settle", lambda u=user: service_turn(u)),
            ("floor reserve+settle", lambda u=user: floor_turn(u)),
        ]
        if i % 2:
            pairs.reverse()
        for name, fn in pairs:
            timed(name, fn)
        if i == warmup - 1:
            for values in timings.values():
                values.clear()
    print(
        f"billing on the turn path: {args.iterations} iterations over {len(users)} wallets "
        f"(rollup {'on' if floor.rollup else 'off'}, day shards {'on' if floor.day_shards else 'off'}, "
        f"lots {'on' if floor.lots else 'off'}, {lots_at_start} at the start), load {os.getloadavg()[0]:.2f}"
    )
    stats = {name: summary(values) for name, values in timings.items()}
    for name, s in stats.items():
        print(f"  {name:22s} {s}")
    for name in ("charge", "reserve+settle"):
        ratio = stats[name].p50 / stats[f"floor {name}"].p50
        print(
            f"  {name}: {ratio:.2f}x the floor (p50; target <= 1.5x) -> {'PASS' if ratio <= 1.5 else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
