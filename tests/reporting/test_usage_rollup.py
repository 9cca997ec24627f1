"""The daily usage rollup: kept by every charge, equal to a recount, and read by the summary unchanged."""

from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from billing import services
from billing.models import ModelPrice, UsageDaily
from billing.rollup import rebuild_usage_rollup, rollup_is_current
from reporting import selectors
from reporting.selectors import usage_summary
from tests.factories import UserFactory

from .test_usage_summary import END, START

# The figures every rollup row adds up (billing.models.UsageFigures).
FIGURES = ("calls", "failed_calls", "input_tokens", "output_tokens", "cost", "shadow_refusals")


def rollup_rows() -> list[tuple]:
    return list(
        UsageDaily.objects.order_by("day", "user_id", "model").values_list(
            "day", "user_id", "model", *FIGURES
        )
    )


def scanned(monkeypatch, **kwargs):
    with monkeypatch.context() as patch:
        patch.setattr(selectors, "rollup_is_current", lambda: False)
        return usage_summary(**kwargs)


@pytest.mark.parametrize("bucket", [None, "day", "week", "month"])
@pytest.mark.parametrize("filters", ["all", "user", "model"])
def test_summary_from_the_rollup_equals_the_event_scan(new_york_events, monkeypatch, bucket, filters):
    rebuild_usage_rollup()
    assert rollup_is_current()
    kwargs = {"start": START, "end": END, "bucket": bucket}
    if filters == "user":
        kwargs["user_id"] = new_york_events["alice"].pk
    elif filters == "model":
        kwargs["model"] = "gpt-4.1-mini"

    assert usage_summary(**kwargs) == scanned(monkeypatch, **kwargs)


def test_charges_keep_the_rollup_equal_to_a_recount(new_york_events, settings):
    rebuild_usage_rollup()
    price = ModelPrice.objects.get(model="echo-1")
    alice, bob = new_york_events["alice"], new_york_events["bob"]
    late_evening = timezone.now().replace(hour=3, minute=30)  # 22:30 the day before in New York
    services.charge(user=alice, price=price, provider="echo", input_tokens=100, output_tokens=20)
    services.charge(
        user=alice, price=price, provider="echo", input_tokens=5, output_tokens=7, occurred_at=late_evening
    )
    hold = services.reserve(user=bob, amount=Decimal("0.5")).hold  # empty wallet: a shadow refusal
    services.settle(hold=hold, user=bob, price=price, provider="echo", input_tokens=10, output_tokens=10)
    hold = services.reserve(user=bob, amount=Decimal("0.5")).hold
    services.record_failed_call(user=bob, model="echo-1", provider="echo", error="timeout", hold=hold)
    services.charge(user=bob, price=price, provider="echo", input_tokens=0, output_tokens=0)  # costs 0
    kept = rollup_rows()

    rebuild_usage_rollup()

    assert kept == rollup_rows()
    assert sum(r[4] for r in kept) == 3  # two failed events in the fixture, one here
    assert sum(r[8] for r in kept) == 2  # the settled and the failed turn were both shadow refusals


def test_summary_scans_events_again_when_report_time_zone_changes(new_york_events, settings, monkeypatch):
    rebuild_usage_rollup()
    settings.REPORT_TIME_ZONE = "UTC"

    assert not rollup_is_current()
    summary = usage_summary(start=START, end=END, bucket="day")
    assert summary == scanned(monkeypatch, start=START, end=END, bucket="day")


def test_rebuild_command_reports_rows(new_york_events, capsys):
    call_command("rebuild_usage_rollup")

    assert "Usage rollup rebuilt: 9 rows, days cut in America/New_York." in capsys.readouterr().out


def test_rollup_counts_an_event_on_its_local_day(db, settings):
    settings.REPORT_TIME_ZONE = "America/New_York"
    user = UserFactory()
    rebuild_usage_rollup()
    price = ModelPrice.objects.get(model="echo-1")
    when = timezone.now().replace(hour=2, minute=0, second=0, microsecond=0)  # the previous day in NY

    services.charge(
        user=user, price=price, provider="echo", input_tokens=10, output_tokens=10, occurred_at=when
    )

    (row,) = UsageDaily.objects.filter(user=user)
    assert row.day == timezone.localtime(when, ZoneInfo("America/New_York")).date()
    assert row.day == (when - timedelta(days=1)).date()


@pytest.mark.skipif(connection.vendor == "postgresql", reason="SQLite behaviour: no rollup there")
def test_sqlite_keeps_no_rollup_and_scans(db):
    user = UserFactory()
    price = ModelPrice.objects.get(model="echo-1")
    services.charge(user=user, price=price, provider="echo", input_tokens=10, output_tokens=10)

    assert not UsageDaily.objects.exists()
    assert not rollup_is_current()
    with pytest.raises(CommandError, match="PostgreSQL only"):
        call_command("rebuild_usage_rollup")
