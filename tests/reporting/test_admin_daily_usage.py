"""The daily-usage admin page: buckets, filters, totals and chart from the selectors; bad input never 500s."""

import importlib
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.apps import apps as global_apps
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from billing.models import LLMCallEvent
from reporting.admin import bucket_count, bucket_starts, cost_chart
from reporting.selectors import UsageRow
from tests.factories import LLMCallEventFactory, ModelPriceFactory, StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/admin/reporting/dailyusage/"


@pytest.fixture
def usage(db, settings):
    """March 2026 in UTC: two users, two models, a failed call; 2026-03-02 is a Monday."""
    settings.REPORT_TIME_ZONE = "UTC"
    ModelPriceFactory(model="gpt-x")
    ann, ben = UserFactory(username="ann"), UserFactory(username="ben")

    def event(user, day, *, model="echo-1", cost="1", tokens=(100, 50), ok=True):
        LLMCallEventFactory(
            user=user,
            model=model,
            input_tokens=tokens[0] if ok else 0,
            output_tokens=tokens[1] if ok else 0,
            cost=Decimal(cost) if ok else Decimal(0),
            status=LLMCallEvent.Status.OK if ok else LLMCallEvent.Status.ERROR,
            created_at=datetime(2026, 3, day, 12, tzinfo=UTC),
        )

    event(ann, 2, cost="1.5")
    event(ben, 2, cost="0.5")
    event(ann, 3, model="gpt-x", cost="4", tokens=(1000, 1000))
    event(ben, 3, ok=False)
    event(ann, 10, cost="2")
    return {"ann": ann, "ben": ben}


def page(client, **params):
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return client.get(f"{URL}?{query}" if query else URL)


def error_messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "error"]


MARCH = {"start": "2026-03-01", "end": "2026-03-31"}


def test_default_page_shows_the_last_30_days_by_day(admin_client, usage):
    response = page(admin_client)
    assert response.status_code == 200
    summary = response.context["summary"]
    assert summary.bucket == "day"
    assert (summary.end - summary.start).days == 29


@pytest.mark.parametrize(
    ("bucket", "dates"),
    [
        ("day", [date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 10)]),
        ("week", [date(2026, 3, 2), date(2026, 3, 9)]),
        ("month", [date(2026, 3, 1)]),
    ],
)
def test_each_bucket_lists_its_rows_with_totals_and_a_chart(admin_client, usage, bucket, dates):
    response = page(admin_client, bucket=bucket, **MARCH)
    assert response.status_code == 200
    summary = response.context["summary"]
    assert [row.date for row in summary.rows] == dates
    assert (summary.total_calls, summary.failed_calls, summary.total_cost) == (4, 1, Decimal("8"))
    assert response.text.count('class="usage-row"') == len(dates)
    assert 'id="usage-totals"' in response.text and "8.000000" in response.text
    assert response.text.count('<rect class="bar"') == len(response.context["chart"].bars) > 0


def test_day_rows_carry_calls_tokens_cost_and_users(admin_client, usage):
    rows = page(admin_client, bucket="day", **MARCH).context["summary"].rows
    first = rows[0]
    assert (first.calls, first.input_tokens, first.output_tokens, first.cost, first.unique_users) == (
        2,
        200,
        100,
        Decimal("2"),
        2,
    )
    assert (rows[1].calls, rows[1].failed_calls) == (1, 1)


def test_filters_by_model_and_by_user(admin_client, usage):
    by_model = page(admin_client, model="gpt-x", **MARCH).context["summary"]
    assert (by_model.total_calls, by_model.total_cost) == (1, Decimal("4"))
    by_name = page(admin_client, user="ben", **MARCH).context["summary"]
    assert (by_name.total_calls, by_name.failed_calls, by_name.total_cost) == (1, 1, Decimal("0.5"))
    by_email = page(admin_client, user="ann%40example.com", **MARCH).context["summary"]
    assert by_email.total_cost == Decimal("7.5")
    by_id = page(admin_client, user=usage["ann"].pk, **MARCH).context["summary"]
    assert by_id.total_cost == Decimal("7.5")


def test_bucket_switch_keeps_the_other_filters(admin_client, usage):
    links = page(admin_client, model="gpt-x", **MARCH).context["bucket_links"]
    assert [(label, selected) for label, _, selected in links] == [
        ("Day", True),
        ("Week", False),
        ("Month", False),
    ]
    week_query = links[1][1]
    assert "bucket=week" in week_query and "model=gpt-x" in week_query and "start=2026-03-01" in week_query


def test_only_start_given_runs_to_today_and_only_end_given_spans_30_days(admin_client, usage):
    only_start = page(admin_client, start="2026-03-01").context["summary"]
    assert (only_start.start, only_start.end) == (date(2026, 3, 1), timezone.localdate())
    only_end = page(admin_client, end="2026-03-31").context["summary"]
    assert (only_end.start, only_end.end) == (date(2026, 3, 2), date(2026, 3, 31))


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2026-13-01"},
        {"start": "yesterday"},
        {"end": "2026-02-30"},
        {"start": "2026-03-31", "end": "2026-03-01"},
        {"start": "2000-01-01", "end": "2026-01-01"},
        {"bucket": "year"},
        {"bucket": "%00"},
        {"start": "2026-03-01%00"},
        {"model": "no-such-model"},
        {"user": "nobody-here"},
        {"user": "%00"},
    ],
)
def test_bad_query_parameters_show_a_friendly_error_not_a_500(admin_client, usage, params):
    response = page(admin_client, **params)
    assert response.status_code == 200
    assert "summary" not in response.context
    assert error_messages(response)
    assert 'class="messagelist"' in response.text


@pytest.mark.parametrize("bucket", ["day", "week", "month"])
@pytest.mark.parametrize(
    "params",
    [
        {"start": "9999-12-31", "end": "9999-12-31"},
        {"start": "9999-12-01", "end": "9999-12-31"},
        {"end": "9999-12-31"},
        {"start": "0001-01-01", "end": "0001-01-02"},
        {"start": "0001-01-01"},
    ],
)
def test_dates_past_the_apis_bounds_are_a_form_error_naming_the_bounds(admin_client, usage, params, bucket):
    response = page(admin_client, bucket=bucket, **params)
    assert response.status_code == 200
    assert "summary" not in response.context
    assert any("between 0001-01-02 and 9999-12-30" in message for message in error_messages(response))


@pytest.mark.parametrize("bucket", ["day", "week", "month"])
@pytest.mark.parametrize(
    ("params", "first", "last"),
    [
        ({"start": "9999-12-27", "end": "9999-12-30"}, date(9999, 12, 27), date(9999, 12, 30)),
        ({"start": "0001-01-02", "end": "0001-01-31"}, date(1, 1, 2), date(1, 1, 31)),
        # Only the end: the default 30 days, clamped at the earliest date accepted (as the API does).
        ({"end": "0001-01-05"}, date(1, 1, 2), date(1, 1, 5)),
    ],
)
def test_ranges_at_the_calendars_ends_are_shown(admin_client, usage, bucket, params, first, last):
    response = page(admin_client, bucket=bucket, **params)
    assert response.status_code == 200
    summary = response.context["summary"]
    assert (summary.start, summary.end, summary.total_calls) == (first, last, 0)


def test_gateway_calls_have_their_own_column_and_are_not_chat(admin_client, usage):
    LLMCallEventFactory(
        user=usage["ann"], purpose="api", cost=Decimal("3"), created_at=datetime(2026, 3, 2, 13, tzinfo=UTC)
    )
    response = page(admin_client, **MARCH)

    summary = response.context["summary"]
    assert (summary.total_api_cost, summary.total_chat_cost, summary.total_cost) == (3, 8, 11)
    assert (summary.rows[0].api_cost, summary.rows[0].chat_cost) == (3, 2)
    totals = re.search(r'<tr id="usage-totals">(.*?)</tr>', response.text, re.S).group(1)
    cells = re.findall(r'<td class="num">([^<]*)</td>', totals)
    assert cells[5:9] == ["8.000000", "0.000000", "0.000000", "3.000000"]  # chat, tool, summary, API
    assert '">API</th>' in response.text


def test_weeks_and_months_span_longer_views_than_days(admin_client, usage):
    months = page(admin_client, start="2020-01-01", end="2026-01-01", bucket="month")
    assert months.context["summary"].total_calls == 0
    assert len(months.context["chart"].bars) == 73  # 2020-01 .. 2026-01
    weeks = page(admin_client, start="2020-01-01", end="2026-03-31", bucket="week")
    assert weeks.context["summary"].total_calls == 4
    days = page(admin_client, start="2020-01-01", end="2026-03-31")
    assert "summary" not in days.context
    assert error_messages(days) == [
        "The report could not be shown: Pick a range of at most 1098 days, or show it by week or month."
    ]


@pytest.mark.parametrize("bucket", ["week", "month"])
def test_weeks_and_months_take_any_range_the_api_takes_charted_when_readable(admin_client, usage, bucket):
    response = page(admin_client, start="0001-01-02", end="9999-12-30", bucket=bucket)

    assert response.status_code == 200
    assert response.context["summary"].total_calls == 4
    assert response.text.count('class="usage-row"') == len(response.context["summary"].rows) > 0
    # Hundreds of thousands of bars would take minutes and megabytes: the table alone, and why.
    assert response.context["chart"] is None and 'id="usage-chart"' not in response.text
    assert "too many bars to chart" in response.text
    assert len(response.content) < 100_000


def test_empty_bucket_parameter_means_day(admin_client, usage):
    response = page(admin_client, bucket="", **MARCH)
    assert response.context["summary"].bucket == "day"


def test_a_range_without_calls_shows_zero_totals_and_flat_bars(admin_client, usage):
    response = page(admin_client, start="2025-01-01", end="2025-01-07")
    assert response.status_code == 200
    assert response.context["summary"].total_calls == 0
    assert "No calls in this range." in response.text
    assert {bar.height for bar in response.context["chart"].bars} == {0.0}


def test_support_agent_sees_the_page_and_staff_without_the_permission_does_not(client, usage):
    migration = importlib.import_module("billing.migrations.0004_support_group")
    migration.create_support_group(global_apps, None)
    agent = StaffUserFactory()
    agent.groups.add(Group.objects.get(name="Support"))
    client.force_login(agent)
    assert page(client, **MARCH).status_code == 200
    assert "Daily usage" in client.get(reverse("admin:index")).text
    assert URL in client.get(reverse("admin:app_list", args=["reporting"])).text
    client.force_login(StaffUserFactory())
    assert page(client, **MARCH).status_code == 403


def test_non_staff_is_sent_to_login(client, usage):
    client.force_login(usage["ann"])
    response = page(client)
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


def test_the_report_has_no_add_change_or_delete_pages(admin_client, usage):
    event = LLMCallEvent.objects.first()
    assert admin_client.get(f"{URL}add/").status_code == 404
    assert admin_client.get(f"{URL}{event.pk}/change/").status_code == 404


def test_bucket_starts_cover_the_range_on_monday_weeks_and_first_of_month():
    assert bucket_starts(start=date(2026, 3, 4), end=date(2026, 3, 16), bucket="week") == [
        date(2026, 3, 2),
        date(2026, 3, 9),
        date(2026, 3, 16),
    ]
    assert bucket_starts(start=date(2025, 12, 15), end=date(2026, 2, 1), bucket="month") == [
        date(2025, 12, 1),
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]
    assert len(bucket_starts(start=date(2024, 2, 1), end=date(2024, 2, 29), bucket="day")) == 29


def test_bucket_starts_reach_the_calendars_last_week_and_month_without_stepping_past_it():
    end = date(9999, 12, 31)
    assert bucket_starts(start=date(9999, 12, 20), end=end, bucket="week") == [
        date(9999, 12, 20),
        date(9999, 12, 27),
    ]
    assert bucket_starts(start=date(9999, 11, 5), end=end, bucket="month") == [
        date(9999, 11, 1),
        date(9999, 12, 1),
    ]
    assert bucket_starts(start=date(9999, 12, 30), end=end, bucket="day") == [date(9999, 12, 30), end]


@pytest.mark.parametrize("bucket", ["day", "week", "month"])
@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2026, 3, 4), date(2026, 3, 4)),
        (date(2025, 12, 15), date(2026, 2, 1)),
        (date(2024, 2, 29), date(2027, 3, 1)),
        (date(9999, 11, 5), date(9999, 12, 31)),
    ],
)
def test_bucket_count_is_the_number_of_bucket_starts(start, end, bucket):
    assert bucket_count(start=start, end=end, bucket=bucket) == len(
        bucket_starts(start=start, end=end, bucket=bucket)
    )


def test_cost_chart_scales_bars_to_the_largest_cost_and_fills_gaps_with_zero():
    rows = [
        UsageRow(date(2026, 3, 1), 1, 0, 1, 1, Decimal("2"), 1, 0, 0),
        UsageRow(date(2026, 3, 3), 1, 0, 1, 1, Decimal("1"), 1, 0, 0),
    ]
    chart = cost_chart(rows=rows, starts=[date(2026, 3, day) for day in (1, 2, 3)])
    heights = [bar.height for bar in chart.bars]
    assert heights[1] == 0 and heights[0] == 2 * heights[2] > 0
    assert [bar.cost for bar in chart.bars] == ["2.00", "0.00", "1.00"]
    assert [label for _, label in chart.gridlines] == ["0.0", "0.5", "1.0", "1.5", "2.0"]


@pytest.mark.parametrize(
    ("peak", "labels"),
    [
        ("8.75", ["0.0", "2.5", "5.0", "7.5", "10.0"]),
        ("3.141593", ["0", "1", "2", "3", "4"]),
        ("0.004217", ["0.000", "0.002", "0.004", "0.006"]),
        ("123456.5", ["0", "50,000", "100,000", "150,000"]),
    ],
)
def test_cost_chart_ticks_are_round_values_with_grouped_thousands(peak, labels):
    rows = [UsageRow(date(2026, 3, 1), 1, 0, 1, 1, Decimal(peak), 1, 0)]
    chart = cost_chart(rows=rows, starts=[date(2026, 3, 1)])

    assert [label for _, label in chart.gridlines] == labels
    assert 0 < chart.bars[0].height <= 200


def test_daily_usage_table_groups_thousands(admin_client):
    from tests.factories import LLMCallEventFactory, UserFactory

    LLMCallEventFactory(user=UserFactory(), input_tokens=1234567, output_tokens=2500, cost=Decimal("1"))
    response = admin_client.get("/admin/reporting/dailyusage/", {"bucket": "day"})

    body = response.content.decode()
    assert "1,234,567" in body and "2,500" in body
    assert LLMCallEvent.objects.count() == 1
