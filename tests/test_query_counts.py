"""Exact query counts of the hot-path endpoints, so an N+1 or a lost fast path fails a test, not a pager.

Clients authenticate as the frontend and scripts do (`Authorization: Token`), so the token lookup is
counted. The turn is pinned in tests/sessions_app/test_turns_api.py and the usage summary's scan
path in tests/reporting/test_usage_summary.py; the rest is here.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing import services
from billing.models import ModelPrice
from billing.rollup import rebuild_usage_rollup
from tests.factories import LLMCallEventFactory, StaffUserFactory, UserFactory, token_client_for


@pytest.fixture
def staff(db):
    return StaffUserFactory()


@pytest.fixture
def busy_user(staff):
    """A user with grants, debits and a staff initiator on every grant: N+1 bait for serializers."""
    user = UserFactory()
    price = ModelPrice.objects.get(model="echo-1")
    for n in range(30):
        services.grant(user=user, amount="5", reason=f"grant {n}", initiated_by=staff)
        services.charge(user=user, price=price, provider="echo", input_tokens=100, output_tokens=50)
    return user


def test_auth_me_queries(busy_user, django_assert_num_queries):
    client = token_client_for(busy_user)
    # the token with its user (one join), the wallet summary
    with django_assert_num_queries(2):
        response = client.get("/api/v1/auth/me")
    assert response.status_code == 200


def test_my_wallet_queries(busy_user, django_assert_num_queries):
    client = token_client_for(busy_user)
    # the token with its user, the wallet's balance, its live lots
    with django_assert_num_queries(3):
        response = client.get("/api/v1/users/me/wallet")
    assert response.status_code == 200


def test_my_transactions_queries_do_not_grow_with_the_page(busy_user, django_assert_num_queries):
    client = token_client_for(busy_user)
    # the token with its user, one page (the wallet id as a subquery, the initiator joined)
    with django_assert_num_queries(2):
        first = client.get("/api/v1/users/me/transactions?page_size=50")
    assert len(first.json()["results"]) == 50
    with django_assert_num_queries(2):
        second = client.get(first.json()["next"])
    assert len(second.json()["results"]) == 10


def test_staff_wallet_view_queries(staff, busy_user, django_assert_num_queries):
    client = token_client_for(staff)
    # the token with its user, the user with the wallet, its last 50 ledger rows with initiators,
    # its live lots
    with django_assert_num_queries(4):
        response = client.get(f"/api/v1/admin/wallets/{busy_user.pk}")
    assert response.status_code == 200
    assert len(response.json()["transactions"]) == 50


def test_grant_queries(staff, busy_user, django_assert_num_queries):
    client = token_client_for(staff)
    url = f"/api/v1/admin/wallets/{busy_user.pk}/grant"
    # the token with its user, the staff throttle's one statement, the user, BEGIN, the wallet
    # UPDATE ... RETURNING, the ledger INSERT, the lot (debt paid first) in one statement, COMMIT
    with django_assert_num_queries(8):
        response = client.post(url, {"amount": "10", "reason": "support"}, format="json")
    assert response.status_code == 200
    # With an Idempotency-Key: one more, the look-up of an earlier grant with that key.
    with django_assert_num_queries(9):
        response = client.post(
            url, {"amount": "10", "reason": "support"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
        )
    assert response.status_code == 200
    # Its replay stops at the look-up.
    with django_assert_num_queries(4):
        response = client.post(
            url, {"amount": "10", "reason": "support"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
        )
    assert response["Idempotent-Replayed"] == "true"


def test_usage_summary_from_the_rollup_queries(staff, busy_user, django_assert_num_queries):
    for days_ago in range(40):
        LLMCallEventFactory(user=busy_user, created_at=timezone.now() - timedelta(days=days_ago))
    rebuild_usage_rollup()
    client = token_client_for(staff)
    # the token with its user, then from the day shards: totals with the range's unique users (one
    # query), one row per day. As served, outside a test's transaction, the two reads share one
    # snapshot: three statements more, BEGIN, SET TRANSACTION and COMMIT
    # (tests/reporting/test_usage_snapshot.py pins them)
    with django_assert_num_queries(3):
        response = client.get("/api/v1/admin/usage/summary?bucket=day")
    assert response.status_code == 200
    assert response.json()["total_calls"] == 30 + 30  # the fixture's charges and 30 days of events
    assert response.json()["unique_users"] == 1


def test_usage_summary_of_one_user_from_the_rollup_queries(staff, busy_user, django_assert_num_queries):
    rebuild_usage_rollup()
    client = token_client_for(staff)
    # the same three, from the (day, user, model) rollup: a filter is beyond the day shards
    with django_assert_num_queries(3):
        response = client.get(f"/api/v1/admin/usage/summary?bucket=week&user_id={busy_user.pk}")
    assert response.status_code == 200
    assert response.json()["total_calls"] == 30


def test_usage_summary_queries(staff, busy_user, django_assert_num_queries):
    client = token_client_for(staff)
    # the token with its user, totals, one row per day
    with django_assert_num_queries(3):
        response = client.get("/api/v1/admin/usage/summary?bucket=day")
    assert response.status_code == 200
