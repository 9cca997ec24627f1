"""Usage summary: the selector's SQL aggregation by local day/week/month, and the staff API over it."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing.rollup import rebuild_usage_rollup
from reporting.selectors import UsageRow, default_range, usage_summary
from tests.factories import LLMCallEventFactory, UserFactory, client_for

START, END = date(2026, 1, 5), date(2026, 2, 1)
URL = "/api/v1/admin/usage/summary"


def row(day, calls, failed, tin, tout, cost, users, shadow=0, fallbacks=0):
    return UsageRow(
        date=date.fromisoformat(day),
        calls=calls,
        failed_calls=failed,
        input_tokens=tin,
        output_tokens=tout,
        cost=Decimal(cost),
        unique_users=users,
        shadow_refusals=shadow,
        summary_fallbacks=fallbacks,
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


def test_usage_summary_cuts_days_in_the_zone_the_rollups_are_rebuilt_in(new_york_events, settings):
    settings.REPORT_TIME_ZONE = "UTC"
    rebuild_usage_rollup()

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


# --- the API ---------------------------------------------------------------------------------


def api_row(day, calls, failed, tin, tout, cost, users, shadow=0, fallbacks=0):
    return {
        "date": day,
        "calls": calls,
        "failed_calls": failed,
        "input_tokens": tin,
        "output_tokens": tout,
        "cost": cost,
        "unique_users": users,
        "shadow_refusals": shadow,
        "summary_fallbacks": fallbacks,
        "cost_by_purpose": {
            "chat": cost,
            "tool_followup": "0.000000",
            "summary": "0.000000",
            "api": "0.000000",
        },
    }


def as_api(rows):
    return [
        api_row(
            r.date.isoformat(),
            r.calls,
            r.failed_calls,
            r.input_tokens,
            r.output_tokens,
            f"{r.cost:.6f}",
            r.unique_users,
            r.shadow_refusals,
            r.summary_fallbacks,
        )
        for r in rows
    ]


def summary(client, **params):
    return client.get(URL, {"start": "2026-01-05", "end": "2026-02-01", **params})


@pytest.mark.parametrize("url", [URL, URL + "/"])
def test_summary_api_refuses_anonymous_with_401_and_users_with_403(api_client, user_client, url):
    assert api_client.get(url).status_code == 401
    assert user_client.get(url).status_code == 403


def test_summary_api_by_day_matches_hand_computed_rows(staff_client, new_york_events):
    response = summary(staff_client, bucket="day")

    assert response.status_code == 200
    assert response.json() == {
        "start": "2026-01-05",
        "end": "2026-02-01",
        "bucket": "day",
        "total_calls": 5,
        "failed_calls": 2,
        "total_input_tokens": 1317,
        "total_output_tokens": 1158,
        "total_cost": "3.387501",
        "unique_users": 3,
        "shadow_refusals": 0,
        "summary_fallbacks": 0,
        "cost_by_purpose": {
            "chat": "3.387501",
            "tool_followup": "0.000000",
            "summary": "0.000000",
            "api": "0.000000",
        },
        "daily": as_api(DAY_ROWS),
        "buckets": as_api(DAY_ROWS),
    }
    # Spot-check the conversion helper against a literal row.
    assert response.json()["daily"][1] == api_row("2026-01-06", 1, 1, 200, 100, "0.250000", 1)


@pytest.mark.parametrize("bucket, rows", [("week", WEEK_ROWS), ("month", MONTH_ROWS)])
def test_summary_api_week_and_month_fill_buckets_not_daily(staff_client, new_york_events, bucket, rows):
    body = summary(staff_client, bucket=bucket).json()

    assert body["bucket"] == bucket
    assert body["daily"] == []
    assert body["buckets"] == as_api(rows)
    assert (body["total_calls"], body["failed_calls"], body["total_cost"]) == (5, 2, "3.387501")


@pytest.mark.parametrize("params", [{}, {"bucket": ""}])
def test_summary_api_without_bucket_gives_totals_only(staff_client, new_york_events, params):
    body = summary(staff_client, **params).json()

    assert body["bucket"] is None
    assert body["daily"] == [] and body["buckets"] == []
    assert (body["total_calls"], body["unique_users"], body["total_cost"]) == (5, 3, "3.387501")


def test_summary_api_filters_by_user_and_model(staff_client, new_york_events):
    bob = new_york_events["bob"]

    by_user = summary(staff_client, bucket="day", user_id=bob.pk).json()
    by_model = summary(staff_client, model="gpt-4.1-mini").json()

    assert [r["date"] for r in by_user["daily"]] == ["2026-01-06", "2026-01-12"]
    assert (by_user["total_calls"], by_user["total_cost"], by_user["unique_users"]) == (2, "2.250000", 1)
    assert (by_model["total_calls"], by_model["failed_calls"], by_model["total_cost"]) == (1, 1, "2.000000")


@pytest.mark.parametrize("params", [{"user_id": "987654321"}, {"model": "no-such-model"}])
def test_summary_api_of_unknown_user_or_model_is_zeros(staff_client, new_york_events, params):
    response = summary(staff_client, bucket="week", **params)

    assert response.status_code == 200
    body = response.json()
    assert body["buckets"] == [] and body["daily"] == []
    assert [
        body[k] for k in ("total_calls", "failed_calls", "total_input_tokens", "total_output_tokens")
    ] == [0] * 4
    assert (body["total_cost"], body["unique_users"]) == ("0.000000", 0)


def test_summary_api_defaults_to_the_last_30_days_in_the_report_time_zone(
    staff_client, settings, monkeypatch
):
    from django.utils import timezone

    settings.REPORT_TIME_ZONE = "Asia/Tokyo"
    # 20:00 UTC on 2026-03-01 is already 2026-03-02 in Tokyo.
    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 3, 1, 20, 0, tzinfo=UTC))
    user = UserFactory()
    LLMCallEventFactory(
        user=user, created_at=datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
    )  # 01:00 on the 2nd, Tokyo
    LLMCallEventFactory(
        user=user, created_at=datetime(2026, 1, 31, 14, 59, tzinfo=UTC)
    )  # 23:59 on Jan 31, Tokyo

    body = staff_client.get(URL, {"bucket": "day"}).json()

    assert (body["start"], body["end"]) == ("2026-02-01", "2026-03-02")
    assert [r["date"] for r in body["daily"]] == ["2026-03-02"]


def test_summary_api_with_only_one_end_of_the_range(staff_client, db, settings, monkeypatch):
    from django.utils import timezone

    settings.REPORT_TIME_ZONE = "UTC"
    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 3, 1, 12, 0, tzinfo=UTC))

    only_end = staff_client.get(URL, {"end": "2026-01-31"}).json()
    only_start = staff_client.get(URL, {"start": "2026-02-20"}).json()

    assert (only_end["start"], only_end["end"]) == ("2026-01-02", "2026-01-31")
    assert (only_start["start"], only_start["end"]) == ("2026-02-20", "2026-03-01")


@pytest.mark.parametrize(
    "params, field",
    [
        ({"bucket": "year"}, "bucket"),
        ({"bucket": "Day"}, "bucket"),
        ({"start": "2026-1-5"}, "start"),
        ({"start": "05/01/2026"}, "start"),
        ({"start": "2026-02-30"}, "start"),
        ({"end": "２０２６-01-05"}, "end"),
        ({"end": "2026-01-05T00:00"}, "end"),
        ({"start": "0001-01-01"}, "start"),
        ({"end": "9999-12-31"}, "end"),
        ({"start": "2026-02-02", "end": "2026-02-01"}, "start"),
        ({"user_id": "abc"}, "user_id"),
        ({"user_id": "1.0"}, "user_id"),
        ({"user_id": "-1"}, "user_id"),
        ({"user_id": "0"}, "user_id"),
        ({"user_id": "１"}, "user_id"),
        ({"model": "x" * 101}, "model"),
        ({"model": "echo\x00-1"}, "model"),
        ({"bucket": "day\x00"}, "bucket"),
    ],
)
def test_summary_api_refuses_invalid_queries_with_400(staff_client, db, params, field):
    response = staff_client.get(URL, params)

    assert response.status_code == 400
    assert field in response.json()
    assert isinstance(response.json()[field][0], str)


@pytest.mark.parametrize("too_large", [str(2**63), "99999999999999999999999", "9" * 5000])
@pytest.mark.parametrize("param", ["user_id", "key_id"])
@pytest.mark.parametrize("bucket", [None, "day"])
def test_an_id_too_large_to_name_a_row_is_simply_not_found(staff_client, db, too_large, param, bucket):
    # It was a 400 "Enter a user id: a positive whole number"; API.md: an unknown user_id is 200, zeros.
    LLMCallEventFactory(created_at=datetime(2026, 1, 10, 12, tzinfo=UTC))
    query = {"start": "2026-01-05", "end": "2026-02-01", **({"bucket": bucket} if bucket else {})}
    assert staff_client.get(URL, query).json()["total_calls"] == 1

    response = staff_client.get(URL, {**query, param: too_large})
    unknown = staff_client.get(URL, {**query, param: "987654"})

    assert response.status_code == 200, response.content
    assert response.json() == unknown.json()
    assert response.json()["total_calls"] == 0 and response.json()["buckets"] == []


def test_staff_and_the_user_split_a_gateway_call_out_of_chat_alike(staff_client, db):
    user = UserFactory()
    LLMCallEventFactory(user=user, purpose="api", cost=Decimal("3"))
    LLMCallEventFactory(user=user, purpose="chat", cost=Decimal("2"))
    LLMCallEventFactory(user=user, purpose="tool_followup", cost=Decimal("1"))
    split = {"chat": "2.000000", "tool_followup": "1.000000", "summary": "0.000000", "api": "3.000000"}

    staff = staff_client.get(URL, {"user_id": user.pk, "bucket": "day"}).json()
    own = client_for(user).get("/api/v1/users/me/usage", {"bucket": "day"}).json()

    assert staff["cost_by_purpose"] == own["cost_by_purpose"] == split
    assert staff["daily"][0]["cost_by_purpose"] == own["daily"][0]["cost_by_purpose"] == split
    start, end = default_range()
    summary = usage_summary(start=start, end=end, bucket="day", user_id=user.pk)
    assert summary.total_chat_cost == summary.rows[0].chat_cost == Decimal(2)


def test_summary_api_answers_in_few_queries(staff_client, new_york_events, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):
        response = summary(staff_client, bucket="day")
    assert response.status_code == 200
    with django_assert_max_num_queries(1):
        summary(staff_client)


def test_shadow_refusals_are_counted_exactly_per_bucket_and_in_totals(staff_client, staff_user, settings):
    """Turns served in shadow mode: counted whatever the provider did, and only those."""
    from django.test import override_settings

    from billing import services
    from tests.factories import ModelPriceFactory, UserFactory

    settings.REPORT_TIME_ZONE = "UTC"
    price = ModelPriceFactory()
    empty, funded = UserFactory(), UserFactory()
    services.grant(user=funded, amount="100", reason="x", initiated_by=staff_user)
    with override_settings(CREDIT_ENFORCEMENT_ENABLED=False, CREDIT_ENFORCEMENT_SHADOW=True):
        for user, failed in [(empty, False), (empty, False), (empty, True), (funded, False)]:
            hold = services.reserve(user=user, amount=Decimal("1")).hold
            if failed:
                services.record_failed_call(
                    user=user, model=price.model, provider="echo", error="x", hold=hold
                )
            else:
                services.charge(
                    hold=hold, user=user, price=price, provider="echo", input_tokens=5, output_tokens=5
                )

    body = staff_client.get(URL, {"bucket": "day"}).json()
    assert body["shadow_refusals"] == 3  # the empty wallet's three turns; the funded one is not
    assert [r["shadow_refusals"] for r in body["daily"]] == [3]
    assert staff_client.get(URL, {"user_id": funded.pk}).json()["shadow_refusals"] == 0
