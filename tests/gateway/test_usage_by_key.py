"""Reports by API key: the user's own usage (group_by=key) and the staff summary's key_id filter."""

import json
from decimal import Decimal

import pytest

from accounts.keys import create_api_key
from billing.models import WalletEvent
from notifications.services import payload
from tests.factories import UserFactory, fund, token_client_for

pytestmark = pytest.mark.django_db


def gateway_call(client, secret, content="hello"):
    response = client.post(
        "/v1/chat/completions",
        json.dumps({"model": "echo-1", "messages": [{"role": "user", "content": content}]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code == 200
    return Decimal(response.json()["usage"]["cost"])


def test_my_usage_by_key_and_the_staff_summary_by_key(client, user, staff_user):
    fund(user, "10")
    laptop, laptop_secret = create_api_key(user=user, name="laptop")
    ci, ci_secret = create_api_key(user=user, name="ci")
    costs = [gateway_call(client, laptop_secret), gateway_call(client, laptop_secret, "again")]
    ci_cost = gateway_call(client, ci_secret)
    other = UserFactory()
    fund(other, "10")
    gateway_call(client, create_api_key(user=other, name="theirs")[1])

    mine = token_client_for(user).get("/api/v1/users/me/usage?group_by=key&bucket=day").json()
    assert "unique_users" not in mine and mine["total_calls"] == 3
    assert Decimal(mine["total_cost"]) == sum(costs) + ci_cost
    assert Decimal(mine["cost_by_purpose"]["api"]) == sum(costs) + ci_cost
    assert Decimal(mine["cost_by_purpose"]["chat"]) == 0
    by_key = {row["key_id"]: row for row in mine["by_key"]}
    assert set(by_key) == {laptop.pk, ci.pk}
    assert by_key[laptop.pk]["calls"] == 2 and Decimal(by_key[laptop.pk]["cost"]) == sum(costs)
    assert by_key[ci.pk]["prefix"] == ci.prefix and by_key[ci.pk]["name"] == "ci"
    assert "unique_users" not in mine["buckets"][0]

    staff = token_client_for(staff_user)
    summary = staff.get(f"/api/v1/admin/usage/summary?key_id={laptop.pk}&bucket=week").json()
    assert summary["total_calls"] == 2 and Decimal(summary["total_cost"]) == sum(costs)
    assert summary["unique_users"] == 1 and len(summary["buckets"]) == 1
    assert staff.get("/api/v1/admin/usage/summary?key_id=999999").json()["total_calls"] == 0
    refused = staff.get("/api/v1/admin/usage/summary?key_id=abc")
    assert refused.status_code == 400
    assert refused.json() == {"key_id": ["Enter an API key's id: a positive whole number (e.g. 42)."]}
    assert staff.get("/api/v1/admin/usage/summary?user_id=0").json() == {
        "user_id": ["Enter a user id: a positive whole number (e.g. 42)."]
    }


def test_a_cap_alert_is_delivered_with_its_percent(user):
    from billing.models import SpendLimit
    from billing.services import set_spend_cap

    fund(user, "10")
    set_spend_cap(user=user, kind=SpendLimit.Kind.USER_CAP, amount=Decimal("0.000001"), period="month")
    _, secret = create_api_key(user=user, name="k")
    from django.test import Client

    gateway_call(Client(), secret)
    event = WalletEvent.objects.get(type="wallet.spend_cap_threshold", percent=100)
    body = payload(event)
    assert body["type"] == "wallet.spend_cap_threshold" and body["data"]["percent"] == 100
    assert body["data"]["threshold"] == "0.000001"


def key_rollup_rows() -> list[tuple]:
    from billing.models import UsageKeyDaily

    return list(
        UsageKeyDaily.objects.order_by("spend_limit_id", "day", "model").values_list(
            "spend_limit_id", "day", "model", "calls", "failed_calls", "input_tokens", "output_tokens", "cost"
        )
    )


def test_gateway_calls_keep_the_per_key_rows_equal_to_a_recount(client, user):
    from billing.rollup import rebuild_usage_rollup

    fund(user, "10")
    laptop, laptop_secret = create_api_key(user=user, name="laptop")
    _, ci_secret = create_api_key(user=user, name="ci")
    costs = [gateway_call(client, laptop_secret), gateway_call(client, laptop_secret, "again")]
    gateway_call(client, ci_secret)
    chat = token_client_for(user)
    session = chat.post("/api/v1/sessions/", {}, format="json").json()
    turn = chat.post(f"/api/v1/sessions/{session['id']}/turns/", {"content": "hi"}, format="json")
    assert turn.status_code == 201  # a turn's call has no key: no per-key row
    kept = key_rollup_rows()

    rebuild_usage_rollup()

    assert kept == key_rollup_rows()
    assert [(row[0], row[3], row[7]) for row in kept][0] == (laptop.spend_limit_id, 2, sum(costs))
    assert len(kept) == 2


def test_a_detached_month_leaves_a_keys_usage_whole(user, tmp_path):
    """Per-key figures come from the rollups, as every report's do: detaching the month's events keeps them."""
    from datetime import UTC, date, datetime

    from billing import partitions
    from billing.models import LLMCallEvent
    from billing.rollup import rebuild_usage_rollup
    from tests.factories import LLMCallEventFactory

    key, _ = create_api_key(user=user, name="laptop")
    for _ in range(3):
        LLMCallEventFactory(
            user=user,
            purpose=LLMCallEvent.Purpose.API,
            spend_limit_id=key.spend_limit_id,
            cost=Decimal("1"),
            created_at=datetime(2024, 3, 14, 12, tzinfo=UTC),
            rollups=False,
        )
    rebuild_usage_rollup()
    client = token_client_for(user)
    query = "/api/v1/users/me/usage?start=2024-03-01&end=2024-03-31&bucket=month"
    by_key = client.get(f"{query}&group_by=key").json()["by_key"]
    of_key = client.get(f"{query}&key_id={key.pk}").json()
    assert [(row["calls"], row["cost"]) for row in by_key] == [(3, "3.000000")]
    assert of_key["total_cost"] == "3.000000" and of_key["buckets"][0]["calls"] == 3

    partitions.detach_call_month(month=date(2024, 3, 1), export_to=tmp_path / "2024-03.csv")

    assert not LLMCallEvent.objects.filter(spend_limit_id=key.spend_limit_id).exists()
    assert client.get(f"{query}&group_by=key").json()["by_key"] == by_key
    assert client.get(f"{query}&key_id={key.pk}").json() == of_key


def test_a_key_with_only_failed_calls_is_listed_with_its_failed_calls(user):
    """A key whose calls in range all failed has a by_key row; without failed_calls its 0 calls and 0 cost
    left the reader nothing to explain why it is listed."""
    from datetime import UTC, datetime

    from billing.models import LLMCallEvent
    from billing.rollup import rebuild_usage_rollup
    from tests.factories import LLMCallEventFactory

    working, _ = create_api_key(user=user, name="working")
    failing, _ = create_api_key(user=user, name="failing")
    when = datetime(2024, 3, 14, 12, tzinfo=UTC)
    for key, status, cost in (
        (working, LLMCallEvent.Status.OK, "1"),
        (working, LLMCallEvent.Status.ERROR, "0"),
        (failing, LLMCallEvent.Status.ERROR, "0"),
        (failing, LLMCallEvent.Status.ERROR, "0"),
    ):
        LLMCallEventFactory(
            user=user,
            purpose=LLMCallEvent.Purpose.API,
            spend_limit_id=key.spend_limit_id,
            status=status,
            cost=Decimal(cost),
            created_at=when,
            rollups=False,
        )
    rebuild_usage_rollup()

    body = token_client_for(user).get("/api/v1/users/me/usage?start=2024-03-01&end=2024-03-31&group_by=key")

    assert body.status_code == 200, body.json()
    rows = [(row["name"], row["calls"], row["failed_calls"], row["cost"]) for row in body.json()["by_key"]]
    assert rows == [("failing", 0, 2, "0.000000"), ("working", 1, 1, "1.000000")]


def test_my_usage_for_a_key_id_too_large_to_name_a_row_is_the_zeros_of_an_unknown_key(user):
    client = token_client_for(user)

    too_large = client.get(f"/api/v1/users/me/usage?key_id={2**63}")
    unknown = client.get("/api/v1/users/me/usage?key_id=999999")

    assert too_large.status_code == 200, too_large.content
    assert too_large.json() == unknown.json() and too_large.json()["total_calls"] == 0
