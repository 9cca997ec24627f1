"""Concurrent charges on PostgreSQL (threads, a connection each): day users and bitmaps exact, no deadlock."""

import random
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from billing import services
from billing.models import UsageDaily, UsageDayShard, UsageUserMonth, UsageUserWeek, Wallet
from billing.rollup import SHARDS, rebuild_usage_rollup
from tests.billing.test_concurrency import run_in_threads
from tests.factories import ModelPriceFactory, UserFactory
from tests.reporting.test_usage_day_shards import rollup_tables

pytestmark = [pytest.mark.django_db(transaction=True)]

THREADS = 8
USERS = 34  # more users than shards: several users share each (day, shard) row
CALLS_PER_DAY = 4
FAILED_CALLS = 3


def settle_a_turn(user, price, when):
    hold = services.reserve(user=user, amount=Decimal("0.01")).hold
    services.charge(
        hold=hold, user=user, price=price, provider="echo", input_tokens=3, output_tokens=2, occurred_at=when
    )


def fail_a_turn(user):
    hold = services.reserve(user=user, amount=Decimal("0.01")).hold
    services.record_failed_call(user=user, model="gpt-4.1-mini", provider="echo", error="timeout", hold=hold)


def test_concurrent_first_calls_of_the_day_count_each_user_once():
    users = [UserFactory() for _ in range(USERS)]
    # Factories, not the data migration's row: a transactional test may run after a flush.
    prices = [ModelPriceFactory(model="echo-1"), ModelPriceFactory(model="gpt-4.1-mini")]
    now = timezone.now()
    days = [now, now - timedelta(days=1)]
    jobs = []
    for user in users:
        for when in days:
            for n in range(CALLS_PER_DAY):
                jobs.append(
                    lambda u=user, p=prices[n % 2], w=when: services.charge(
                        user=u, price=p, provider="echo", input_tokens=10, output_tokens=5, occurred_at=w
                    )
                )
        for _ in range(FAILED_CALLS):  # no hold: the user's rollup rows, not the wallet
            jobs.append(
                lambda u=user: services.record_failed_call(
                    user=u, model="echo-1", provider="echo", error="timeout"
                )
            )
        # Turns: a hold settled, and a hold released by a failed call (hold, wallet, then rollups).
        jobs.append(lambda u=user: settle_a_turn(u, prices[1], now))
        jobs.append(lambda u=user: fail_a_turn(u))
        # A zero-cost successful call: the ORM path, racing the one-statement debits.
        jobs.append(
            lambda u=user: services.charge(
                user=u, price=prices[0], provider="echo", input_tokens=0, output_tokens=0, occurred_at=now
            )
        )
    random.Random(7).shuffle(jobs)

    run_in_threads(THREADS, jobs)

    for when in days:
        day = when.date()  # REPORT_TIME_ZONE is UTC here
        shards = UsageDayShard.objects.filter(day=day)
        assert sum(shards.values_list("users", flat=True)) == USERS
        # Today also has each user's zero-cost call, settled turn and failed calls.
        assert sum(shards.values_list("calls", flat=True)) == USERS * (CALLS_PER_DAY + 2 * (when is now))
        assert sum(shards.values_list("failed_calls", flat=True)) == USERS * (FAILED_CALLS + 1) * (
            when is now
        )
        assert shards.count() == SHARDS
        months = UsageUserMonth.objects.filter(month=day.replace(day=1))
        assert sum(1 for m in months if m.days & (1 << (day.day - 1))) == USERS
        weeks = UsageUserWeek.objects.filter(week=day - timedelta(days=day.weekday()))
        assert sum(1 for w in weeks if w.days & (1 << day.weekday())) == USERS
    kept = rollup_tables()

    rebuild_usage_rollup()

    assert rollup_tables() == kept


# --- Lock order: a charge takes the (day, shard) row other users share only after its own rows ----


def two_users_in_one_shard():
    users = [UserFactory() for _ in range(SHARDS + 1)]  # pigeonhole: two of them share a shard
    by_shard = {}
    for user in users:
        if user.pk % SHARDS in by_shard:
            return by_shard[user.pk % SHARDS], user
        by_shard[user.pk % SHARDS] = user
    raise AssertionError("unreachable")


def locked_while_waiting_for_the_shard_row(*, holder, waiter, probe_sql: str, probe_params: list) -> bool:
    """Whether `waiter`, queued behind `holder`'s open transaction on the shared shard row, holds the probed row.

    `holder` runs inside a transaction kept open until the probe is done; `waiter` then runs on
    another connection and blocks on the (day, shard) row. The probe asks for the row with
    FOR UPDATE NOWAIT from a third connection: it is refused when the waiter already holds it.
    """
    holding, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                holder()
                holding.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def wait():
        holding.wait(timeout=30)
        try:
            waiter()
        finally:
            connection.close()

    threads = [threading.Thread(target=hold), threading.Thread(target=wait)]
    for thread in threads:
        thread.start()
    try:
        assert holding.wait(timeout=30)
        with connection.cursor() as cursor:
            for _ in range(600):  # until the waiter's backend waits on a lock (at most ~30 s)
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the second charge never waited for the shard row")
            try:
                with transaction.atomic():
                    cursor.execute(probe_sql + " FOR UPDATE NOWAIT", probe_params)
            except OperationalError:
                return True
            return False
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=30)


def test_a_failed_call_locks_its_users_daily_row_before_the_shared_shard_row():
    a, b = two_users_in_one_shard()
    price = ModelPriceFactory(model="echo-1")
    services.record_failed_call(user=a, model="echo-1", provider="echo", error="timeout")  # a's row exists

    assert locked_while_waiting_for_the_shard_row(
        holder=lambda: services.charge(user=b, price=price, provider="echo", input_tokens=1, output_tokens=1),
        waiter=lambda: services.record_failed_call(user=a, model="echo-1", provider="echo", error="timeout"),
        probe_sql=f"SELECT 1 FROM {UsageDaily._meta.db_table} WHERE user_id = %s",
        probe_params=[a.pk],
    )


def test_a_zero_cost_charge_locks_the_wallet_before_the_shared_shard_row():
    a, b = two_users_in_one_shard()
    price = ModelPriceFactory(model="echo-1")

    assert locked_while_waiting_for_the_shard_row(
        holder=lambda: services.charge(user=b, price=price, provider="echo", input_tokens=1, output_tokens=1),
        waiter=lambda: services.charge(user=a, price=price, provider="echo", input_tokens=0, output_tokens=0),
        probe_sql=f"SELECT 1 FROM {Wallet._meta.db_table} WHERE user_id = %s",
        probe_params=[a.pk],
    )


def test_a_failed_turn_releases_its_hold_and_wallet_before_the_shared_shard_row():
    a, b = two_users_in_one_shard()
    price = ModelPriceFactory(model="echo-1")

    assert locked_while_waiting_for_the_shard_row(
        holder=lambda: services.charge(user=b, price=price, provider="echo", input_tokens=1, output_tokens=1),
        waiter=lambda: fail_a_turn(a),
        probe_sql=f"SELECT 1 FROM {Wallet._meta.db_table} WHERE user_id = %s",
        probe_params=[a.pk],
    )
