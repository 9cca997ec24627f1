"""Concurrent charges on PostgreSQL (threads, a connection each) keep the day users and bitmaps exact."""

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import services
from billing.models import UsageDayShard, UsageUserMonth, UsageUserWeek
from billing.rollup import SHARDS, rebuild_usage_rollup
from tests.billing.test_concurrency import run_in_threads
from tests.conftest import requires_postgres
from tests.factories import ModelPriceFactory, UserFactory
from tests.reporting.test_usage_day_shards import rollup_tables

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]

THREADS = 8
USERS = 34  # more users than shards: several users share each (day, shard) row
CALLS_PER_DAY = 4


def settle_a_turn(user, price, when):
    hold = services.reserve(user=user, amount=Decimal("0.01")).hold
    services.settle(
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
        # Today also has each user's zero-cost call, settled turn and two failed calls.
        assert sum(shards.values_list("calls", flat=True)) == USERS * (CALLS_PER_DAY + 2 * (when is now))
        assert sum(shards.values_list("failed_calls", flat=True)) == USERS * 2 * (when is now)
        assert shards.count() == SHARDS
        months = UsageUserMonth.objects.filter(month=day.replace(day=1))
        assert sum(1 for m in months if m.days & (1 << (day.day - 1))) == USERS
        weeks = UsageUserWeek.objects.filter(week=day - timedelta(days=day.weekday()))
        assert sum(1 for w in weeks if w.days & (1 << day.weekday())) == USERS
    kept = rollup_tables()

    rebuild_usage_rollup()

    assert rollup_tables() == kept
