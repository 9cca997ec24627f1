"""The day-shard rollup and the users' day bitmaps: kept exact by charges, equal to the event scan."""

import random
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import services
from billing.models import (
    LLMCallEvent,
    ModelPrice,
    UsageDaily,
    UsageDayShard,
    UsageUserMonth,
    UsageUserWeek,
)
from billing.rollup import SHARDS, rebuild_usage_rollup
from reporting.selectors import usage_summary
from tests.factories import LLMCallEventFactory, ModelPriceFactory, UserFactory
from tests.reporting.event_scan import event_scan

from .conftest import NEW_YORK, new_york
from .test_usage_rollup import FIGURES, rollup_rows

MODELS = ("echo-1", "gpt-4.1-mini", "gpt-4.1")
# Ranges that start and end mid-week and mid-month, cross a month, a year and a week boundary, sit
# inside one week or one month, or hold no event at all. The events span 2025-12-24 .. 2026-02-06.
RANGES = [
    (date(2025, 12, 29), date(2026, 1, 27)),  # Monday to Tuesday, across the new year
    (date(2025, 12, 31), date(2026, 1, 29)),  # Wednesday to Thursday, 30 days
    (date(2026, 1, 15), date(2026, 2, 3)),
    (date(2026, 1, 30), date(2026, 2, 1)),  # Friday to Sunday: one week, two months
    (date(2026, 1, 31), date(2026, 3, 1)),  # 30 days that touch three months
    (date(2026, 1, 7), date(2026, 1, 7)),
    (date(2026, 1, 6), date(2026, 1, 9)),
    (date(2025, 12, 1), date(2026, 2, 28)),  # everything
    (date(2026, 2, 9), date(2026, 2, 15)),  # no events
]


def rollup_tables() -> dict[str, list[tuple]]:
    """Every row of the rollup tables but their ids, in key order."""
    return {
        "daily": rollup_rows(),
        "day_shards": list(
            UsageDayShard.objects.order_by("day", "shard").values_list("day", "shard", *FIGURES, "users")
        ),
        "months": list(
            UsageUserMonth.objects.order_by("month", "user_id").values_list("month", "user_id", "days")
        ),
        "weeks": list(
            UsageUserWeek.objects.order_by("week", "user_id").values_list("week", "user_id", "days")
        ),
    }


def from_day_shards(**kwargs):
    """The summary, asserting it was read from the day shards and not from events or daily rows."""
    with CaptureQueriesContext(connection) as captured:
        summary = usage_summary(**kwargs)
    sql = " ".join(q["sql"] for q in captured.captured_queries)
    assert UsageDayShard._meta.db_table in sql
    assert LLMCallEvent._meta.db_table not in sql
    assert UsageDaily._meta.db_table not in sql
    return summary


@pytest.fixture
def busy_weeks(db, settings):
    """~300 events of 20 users in REPORT_TIME_ZONE America/New_York, 2025-12-24 .. 2026-02-06.

    Deterministic (seeded) mix of models, failed calls (10%), shadow refusals (5%), zero-cost calls
    and local hours from 0 to 23, so that UTC and local days differ. 20 users fill more than 16 shards.
    """
    settings.REPORT_TIME_ZONE = "America/New_York"
    rng = random.Random(20260131)
    users = [UserFactory() for _ in range(20)]
    day = date(2025, 12, 24)
    while day <= date(2026, 2, 6):
        for user in users:
            if rng.random() < 0.3:
                for _ in range(rng.randint(1, 3)):
                    ok = rng.random() >= 0.1
                    zero = rng.random() < 0.05
                    LLMCallEventFactory(
                        user=user,
                        model=rng.choice(MODELS),
                        input_tokens=rng.randint(1, 500) if ok and not zero else 0,
                        output_tokens=rng.randint(1, 500) if ok and not zero else 0,
                        cost=Decimal(rng.randint(1, 10**6)) / 10**6 if ok and not zero else Decimal(0),
                        status=LLMCallEvent.Status.OK if ok else LLMCallEvent.Status.ERROR,
                        shadow_refusal=rng.random() < 0.05,
                        rollups=False,
                        created_at=new_york(
                            day.year, day.month, day.day, rng.randint(0, 23), rng.randint(0, 59)
                        ),
                    )
        day += timedelta(days=1)
    rebuild_usage_rollup()  # the factory writes events alone; a recorded call would keep the rollups
    return users


@pytest.mark.parametrize("bucket", [None, "day", "week", "month"])
def test_summary_from_the_day_shards_equals_the_event_scan(busy_weeks, monkeypatch, bucket):
    rebuild_usage_rollup()

    for start, end in RANGES:
        kwargs = {"start": start, "end": end, "bucket": bucket}
        assert from_day_shards(**kwargs) == event_scan(**kwargs), (start, end)


def test_the_ranges_exercise_distinct_users(busy_weeks):
    """The data is such that a sum of per-day or per-week users would be wrong: the counts are distinct."""
    rebuild_usage_rollup()
    start, end = RANGES[1]

    days = usage_summary(start=start, end=end, bucket="day")
    weeks = usage_summary(start=start, end=end, bucket="week")
    months = usage_summary(start=start, end=end, bucket="month")

    assert days.unique_users == 20
    assert sum(r.unique_users for r in weeks.rows) > sum(r.unique_users for r in months.rows) > 20
    assert sum(r.unique_users for r in days.rows) > sum(r.unique_users for r in weeks.rows)
    assert weeks.rows[0].date == date(2025, 12, 29)  # a partial first week (from Wednesday)
    assert months.rows[0].date == date(2025, 12, 1)  # and a partial first month


def test_rebuild_derives_the_day_shards_and_bitmaps_from_events(busy_weeks):
    rebuild_usage_rollup()
    tables = rollup_tables()

    events = LLMCallEvent.objects.all()
    assert sum(r[2] for r in tables["day_shards"]) == events.filter(status="ok").count()
    assert sum(r[3] for r in tables["day_shards"]) == events.filter(status="error").count()
    assert {r[1] for r in tables["day_shards"]} == set(range(SHARDS))
    active_days = {
        (e.user_id, timezone.localtime(e.created_at, NEW_YORK).date()) for e in events.filter(status="ok")
    }
    assert sum(r[-1] for r in tables["day_shards"]) == len(active_days)
    assert sum(bin(days).count("1") for _, _, days in tables["months"]) == len(active_days)
    assert sum(bin(days).count("1") for _, _, days in tables["weeks"]) == len(active_days)


@pytest.fixture
def priced(db):
    return {
        "echo-1": ModelPrice.objects.get(model="echo-1"),
        "gpt-4.1-mini": ModelPriceFactory(model="gpt-4.1-mini"),
    }


def charge(user, price, when: datetime, tokens: int = 10):
    return services.charge(
        user=user, price=price, provider="echo", input_tokens=tokens, output_tokens=tokens, occurred_at=when
    )


def test_charges_settles_failures_and_zero_cost_calls_keep_every_table_equal_to_a_recount(
    db, settings, priced, monkeypatch
):
    settings.REPORT_TIME_ZONE = "America/New_York"
    alice, bob, carol = UserFactory(), UserFactory(), UserFactory()
    rebuild_usage_rollup()
    echo, mini = priced["echo-1"], priced["gpt-4.1-mini"]
    # Saturday 31 January and Sunday 1 February 2026 in New York: one week, two months; 23:30 local
    # on the 31st is already February in UTC.
    charge(alice, echo, new_york(2026, 1, 31, 23, 30))
    charge(alice, mini, new_york(2026, 2, 1, 0, 30))
    charge(alice, echo, new_york(2026, 2, 1, 9, 0))  # a second call that day: no new user
    charge(bob, mini, new_york(2026, 2, 2, 12, 0))  # Monday: the next week
    charge(bob, echo, new_york(2026, 1, 26, 12, 0))  # arrives late, for a day earlier in that week
    charge(carol, echo, new_york(2026, 2, 1, 12, 0), tokens=0)  # costs nothing, still a successful call
    now = timezone.now()
    hold = services.reserve(user=bob, amount=Decimal("0.5")).hold  # empty wallet: a shadow refusal
    services.charge(hold=hold, user=bob, price=echo, provider="echo", input_tokens=5, output_tokens=5)
    hold = services.reserve(user=carol, amount=Decimal("0.5")).hold
    services.record_failed_call(user=carol, model="gpt-4.1-mini", provider="echo", error="timeout", hold=hold)
    services.record_failed_call(user=UserFactory(), model="echo-1", provider="echo", error="timeout")
    kept = rollup_tables()

    rebuild_usage_rollup()

    assert rollup_tables() == kept
    # Across the rebuild: more calls on top of the rebuilt rows, then another recount.
    charge(carol, mini, new_york(2026, 2, 1, 18, 0))  # carol's second call that day
    charge(carol, mini, new_york(2026, 1, 30, 18, 0))  # and her first on the Friday before
    kept = rollup_tables()
    rebuild_usage_rollup()
    assert rollup_tables() == kept

    today = timezone.localtime(now, NEW_YORK).date()
    for start, end in [(date(2026, 1, 26), date(2026, 2, 2)), (date(2026, 1, 31), today)]:
        for bucket in (None, "day", "week", "month"):
            kwargs = {"start": start, "end": end, "bucket": bucket}
            assert from_day_shards(**kwargs) == event_scan(**kwargs), kwargs


def test_a_user_counts_once_a_day_and_a_failed_call_never_counts(db, settings, priced):
    settings.REPORT_TIME_ZONE = "UTC"
    user = UserFactory()
    rebuild_usage_rollup()
    when = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    day = when.date()
    shard = UsageDayShard.objects.filter(day=day, shard=user.pk % SHARDS)

    services.record_failed_call(user=user, model="echo-1", provider="echo", error="timeout")
    assert shard.values_list("calls", "failed_calls", "users").get() == (0, 1, 0)
    assert not UsageUserMonth.objects.filter(user=user).exists()

    charge(user, priced["echo-1"], when)
    charge(user, priced["gpt-4.1-mini"], when)  # another model, the same day
    charge(user, priced["echo-1"], when)
    assert shard.values_list("calls", "failed_calls", "users").get() == (3, 1, 1)
    month = UsageUserMonth.objects.get(user=user)
    assert (month.month, month.days) == (day.replace(day=1), 1 << (day.day - 1))
    week = UsageUserWeek.objects.get(user=user)
    assert (week.week, week.days) == (day - timedelta(days=day.weekday()), 1 << day.weekday())


def test_a_filtered_summary_reads_the_daily_rollup(new_york_events, monkeypatch):
    """With a user or model filter the day shards cannot answer: the (day, user, model) rows do."""
    rebuild_usage_rollup()
    kwargs = {"start": date(2026, 1, 5), "end": date(2026, 2, 1), "bucket": "week", "model": "echo-1"}

    with CaptureQueriesContext(connection) as captured:
        summary = usage_summary(**kwargs)

    sql = " ".join(q["sql"] for q in captured.captured_queries)
    assert UsageDaily._meta.db_table in sql
    assert UsageDayShard._meta.db_table not in sql
    assert summary == event_scan(**kwargs)
