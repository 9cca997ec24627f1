"""Usage summary: the selector's SQL aggregation by local day/week/month, and the staff API over it."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from reporting.selectors import UsageRow, default_range, usage_summary
from tests.factories import LLMCallEventFactory, UserFactory

START, END = date(2026, 1, 5), date(2026, 2, 1)
URL = "/api/v1/admin/usage/summary"


def row(day, calls, failed, tin, tout, cost, users):
    return UsageRow(
        date=date.fromisoformat(day),
        calls=calls,
        failed_calls=failed,
        input_tokens=tin,
        output_tokens=tout,
        cost=Decimal(cost),
        unique_users=users,
    )


# Hand-computed from tests/reporting/conftest.py::new_york_events.
DAY_ROWS = [
    row("2026-01-05", 1, 0, 100, 50, "0.125000", 1),
    row("2026-01-06", 1, 1, 200, 100, "0.250000", 1),
    row("2026-01-11", 1, 0, 10, 5, "0.012500", 1),
    row("2026-01-12", 1, 0, 1000, 1000, "2.000000", 1),
    row("2026-01-20", 0, 1, 0, 0, "0.000000", 0),
    row("2026-02-01", 1, 0, 7, 3, "1.000001", 1),
]
WEEK_ROWS = [
    row("2026-01-05", 3, 1, 310, 155, "0.387500", 2),
    row("2026-01-12", 1, 0, 1000, 1000, "2.000000", 1),
    row("2026-01-19", 0, 1, 0, 0, "0.000000", 0),
    row("2026-01-26", 1, 0, 7, 3, "1.000001", 1),
]
MONTH_ROWS = [
    row("2026-01-01", 4, 2, 1310, 1155, "2.387500", 2),
    row("2026-02-01", 1, 0, 7, 3, "1.000001", 1),
]


# --- the selector ----------------------------------------------------------------------------


def test_usage_summary_totals_count_successful_calls_and_failed_apart(new_york_events):
    summary = usage_summary(start=START, end=END, bucket=None)

    assert (summary.start, summary.end, summary.bucket) == (START, END, None)
    assert summary.total_calls == 5
    assert summary.failed_calls == 2
    assert summary.total_input_tokens == 1317
    assert summary.total_output_tokens == 1158
    assert summary.total_cost == Decimal("3.387501")
    assert summary.unique_users == 3
    assert summary.rows == []


def test_usage_summary_cuts_days_at_local_midnight(new_york_events):
    summary = usage_summary(start=START, end=END, bucket="day")

    assert summary.rows == DAY_ROWS


def test_usage_summary_weeks_start_on_monday(new_york_events):
    assert usage_summary(start=START, end=END, bucket="week").rows == WEEK_ROWS


def test_usage_summary_month_buckets_start_on_the_first(new_york_events):
    assert usage_summary(start=START, end=END, bucket="month").rows == MONTH_ROWS


def test_usage_summary_reads_the_report_time_zone_on_each_call(new_york_events, settings):
    settings.REPORT_TIME_ZONE = "UTC"

    summary = usage_summary(start=START, end=date(2026, 1, 6), bucket="day")

    # In UTC, 23:59 New York on the 4th is the 5th, and 23:30/00:30 New York both fall on the 6th.
    assert [(r.date, r.calls, r.failed_calls, r.unique_users) for r in summary.rows] == [
        (date(2026, 1, 5), 1, 0, 1),
        (date(2026, 1, 6), 2, 1, 2),
    ]


def test_usage_summary_in_a_zone_east_of_utc(db, settings):
    settings.REPORT_TIME_ZONE = "Asia/Tokyo"
    user = UserFactory()
    # 23:30 and 00:30 Tokyo time, on either side of the local midnight (14:30 and 15:30 UTC on the 9th).
    LLMCallEventFactory(user=user, created_at=datetime(2026, 3, 9, 14, 30, tzinfo=UTC), cost=Decimal("1"))
    LLMCallEventFactory(user=user, created_at=datetime(2026, 3, 9, 15, 30, tzinfo=UTC), cost=Decimal("2"))

    summary = usage_summary(start=date(2026, 3, 9), end=date(2026, 3, 10), bucket="day")

    assert [(r.date, r.cost) for r in summary.rows] == [
        (date(2026, 3, 9), Decimal("1.000000")),
        (date(2026, 3, 10), Decimal("2.000000")),
    ]


def test_usage_summary_filters_by_user_and_model(new_york_events):
    bob = new_york_events["bob"]

    by_user = usage_summary(start=START, end=END, bucket="day", user_id=bob.pk)
    by_model = usage_summary(start=START, end=END, bucket="week", model="gpt-4.1-mini")
    both = usage_summary(start=START, end=END, bucket=None, user_id=bob.pk, model="echo-1")

    assert [(r.date, r.calls) for r in by_user.rows] == [(date(2026, 1, 6), 1), (date(2026, 1, 12), 1)]
    assert by_user.total_cost == Decimal("2.250000")
    assert [(r.date, r.calls, r.failed_calls) for r in by_model.rows] == [
        (date(2026, 1, 12), 1, 0),
        (date(2026, 1, 19), 0, 1),
    ]
    assert (both.total_calls, both.total_input_tokens, both.total_cost) == (1, 200, Decimal("0.250000"))


def test_usage_summary_of_unknown_user_or_model_is_zeros(new_york_events):
    for summary in (
        usage_summary(start=START, end=END, bucket="day", user_id=987654321),
        usage_summary(start=START, end=END, bucket="day", model="no-such-model"),
    ):
        assert summary.rows == []
        assert (summary.total_calls, summary.failed_calls, summary.unique_users) == (0, 0, 0)
        assert (summary.total_input_tokens, summary.total_output_tokens) == (0, 0)
        assert summary.total_cost == Decimal("0.000000")


def test_usage_summary_refuses_unknown_bucket_and_reversed_range(db):
    with pytest.raises(ValueError, match="bucket"):
        usage_summary(start=START, end=END, bucket="year")
    with pytest.raises(ValueError, match="after"):
        usage_summary(start=END, end=START, bucket=None)


def test_usage_summary_runs_two_queries_whatever_the_data(new_york_events, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):
        usage_summary(start=START, end=END, bucket="day")
    with django_assert_max_num_queries(1):
        usage_summary(start=START, end=END, bucket=None)


def test_default_range_is_the_last_30_days_ending_today():
    assert default_range(date(2026, 3, 1)) == (date(2026, 1, 31), date(2026, 3, 1))


def test_default_range_takes_today_in_the_report_time_zone(settings, monkeypatch):
    from django.utils import timezone

    # 02:00 UTC on 2026-03-01 is still 2026-02-28 in New York.
    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 3, 1, 2, 0, tzinfo=UTC))
    settings.REPORT_TIME_ZONE = "America/New_York"
    assert default_range() == (date(2026, 1, 30), date(2026, 2, 28))
    settings.REPORT_TIME_ZONE = "UTC"
    assert default_range() == (date(2026, 1, 31), date(2026, 3, 1))
