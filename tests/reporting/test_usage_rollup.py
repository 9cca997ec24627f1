"""The daily usage rollup: kept by every charge, equal to a recount, and read by the summary unchanged."""

from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.utils import timezone

from billing import services
from billing.models import ModelPrice, UsageDaily
from billing.rollup import built_for_time_zone, rebuild_usage_rollup
from reporting.selectors import usage_summary
from tests.factories import UserFactory
from tests.reporting.event_scan import event_scan

from .test_usage_summary import END, START

# The figures every rollup row adds up (billing.models.UsageFigures).
FIGURES = (
    "calls",
    "failed_calls",
    "input_tokens",
    "output_tokens",
    "cost",
    "shadow_refusals",
    "summary_fallbacks",
    "tool_followup_cost",
    "summary_cost",
)


def rollup_rows() -> list[tuple]:
    return list(
        UsageDaily.objects.order_by("day", "user_id", "model").values_list(
            "day", "user_id", "model", *FIGURES
        )
    )


@pytest.mark.parametrize("bucket", [None, "day", "week", "month"])
@pytest.mark.parametrize("filters", ["all", "user", "model"])
def test_summary_from_the_rollup_equals_the_event_scan(new_york_events, bucket, filters):
    kwargs = {"start": START, "end": END, "bucket": bucket}
    if filters == "user":
        kwargs["user_id"] = new_york_events["alice"].pk
    elif filters == "model":
        kwargs["model"] = "gpt-4.1-mini"

    assert usage_summary(**kwargs) == event_scan(**kwargs)


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
    services.charge(hold=hold, user=bob, price=price, provider="echo", input_tokens=10, output_tokens=10)
    hold = services.reserve(user=bob, amount=Decimal("0.5")).hold
    services.record_failed_call(user=bob, model="echo-1", provider="echo", error="timeout", hold=hold)
    services.charge(user=bob, price=price, provider="echo", input_tokens=0, output_tokens=0)  # costs 0
    kept = rollup_rows()

    rebuild_usage_rollup()

    assert kept == rollup_rows()
    assert sum(r[4] for r in kept) == 3  # two failed events in the fixture, one here
    assert sum(r[8] for r in kept) == 2  # the settled and the failed turn were both shadow refusals


def test_a_report_time_zone_change_is_flagged_until_the_rollups_are_rebuilt(new_york_events, settings):
    settings.REPORT_TIME_ZONE = "UTC"
    warnings = [w for w in run_checks(databases=["default"]) if w.id == "billing.W001"]
    assert len(warnings) == 1 and "America/New_York" in warnings[0].msg
    # Calls charged since the change are filed under UTC days, earlier ones keep their New York days.
    assert "mix days in America/New_York and UTC" in warnings[0].msg
    assert "old zone" not in warnings[0].msg and "rebuild_usage_rollup" in warnings[0].hint

    rebuild_usage_rollup()

    assert built_for_time_zone() == "UTC"
    assert not [w for w in run_checks(databases=["default"]) if w.id == "billing.W001"]
    summary = usage_summary(start=START, end=END, bucket="day")
    assert summary == event_scan(start=START, end=END, bucket="day")


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


def test_rollup_models_have_one_column_per_declared_usage_figure():
    """USAGE_FIGURES is the one source: both figure rollups carry exactly its columns, in its order."""
    from billing.models import USAGE_FIGURES, UsageDayShard

    names = [figure.name for figure in USAGE_FIGURES]
    for model in (UsageDaily, UsageDayShard):
        columns = [f.name for f in model._meta.concrete_fields if f.name in names]
        assert columns == names
