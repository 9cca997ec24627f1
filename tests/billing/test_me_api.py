"""The user's own ledger: users/me/wallet and users/me/transactions (cursor pages, strict filters)."""

from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import override_settings
from django.utils import timezone

from billing.models import CreditTransaction
from billing.services import grant
from sessions_app.services import take_turn
from tests.factories import ChatSessionFactory, StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db

TX = "/api/v1/users/me/transactions"


@pytest.fixture
def staff(db):
    return StaffUserFactory(username="alice-staff")


def give(user, amount, staff, reason="top up"):
    return grant(user=user, amount=Decimal(amount), reason=reason, initiated_by=staff)


def give_at(monkeypatch, user, amount, staff, when: datetime):
    """A grant written as if at `when` (the ledger is append-only: rows are dated as they are written)."""
    with monkeypatch.context() as patch:
        patch.setattr(timezone, "now", lambda: when)
        return give(user, amount, staff)


@pytest.mark.parametrize("path", ["/api/v1/users/me/wallet", "/api/v1/users/me/wallet/"])
def test_wallet_shows_balance_and_threshold(token_client, user, staff, path):
    give(user, "12.5", staff)

    response = token_client.get(path)

    assert response.status_code == 200
    body = response.json()
    lots = body.pop("lots")
    assert body == {
        "balance": "12.500000",
        "low_balance": False,
        "low_balance_threshold": "1.000000",
        "next_expiry": None,
    }
    assert [(lot["amount"], lot["remaining"]) for lot in lots] == [("12.500000", "12.500000")]


@override_settings(LOW_BALANCE_THRESHOLD=Decimal("20"))
def test_wallet_low_balance_follows_the_setting(user_client, user, staff):
    give(user, "12.5", staff)

    body = user_client.get("/api/v1/users/me/wallet").json()
    assert (body["balance"], body["low_balance"], body["low_balance_threshold"]) == (
        "12.500000",
        True,
        "20.000000",
    )


@pytest.mark.parametrize("path", [TX, TX + "/"])
def test_transactions_newest_first_with_shape(user_client, user, staff, path):
    granted = give(user, "3", staff, reason="welcome")
    result = take_turn(session=ChatSessionFactory(owner=user), user=user, content="hello")
    debit = CreditTransaction.objects.get(llm_call=result.turn.llm_call)

    response = user_client.get(path)

    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"next", "previous", "results"}
    assert body["next"] is None and body["previous"] is None
    first, second = body["results"]
    assert first == {
        "id": debit.pk,
        "kind": "debit",
        "amount": f"{debit.amount:.6f}",
        "balance_after": f"{debit.balance_after:.6f}",
        "reason": debit.reason,
        "created_at": first["created_at"],
        "initiated_by": None,
        "llm_call": result.turn.llm_call_id,
        "refund_of": None,
    }
    assert first["amount"].startswith("-")
    assert second == {
        "id": granted.pk,
        "kind": "grant",
        "amount": "3.000000",
        "balance_after": "3.000000",
        "reason": "welcome",
        "created_at": second["created_at"],
        "initiated_by": {"id": staff.pk, "username": "alice-staff"},
        "llm_call": None,
        "refund_of": None,
    }
    assert datetime.fromisoformat(second["created_at"].replace("Z", "+00:00")).tzinfo is not None


def test_transactions_never_include_another_users(user_client, user, staff):
    other = UserFactory()
    give(other, "7", staff)
    take_turn(session=ChatSessionFactory(owner=other), user=other, content="theirs")
    mine = give(user, "1", staff)

    ids = [row["id"] for row in user_client.get(TX).json()["results"]]

    assert ids == [mine.pk]


def test_transactions_paginate_by_cursor_without_gaps(user_client, user, staff):
    rows = [give(user, str(n), staff) for n in range(1, 6)]

    first = user_client.get(TX, {"page_size": 2}).json()
    second = user_client.get(first["next"]).json()
    third = user_client.get(second["next"]).json()

    pages = [first, second, third]
    assert [[r["id"] for r in p["results"]] for p in pages] == [
        [rows[4].pk, rows[3].pk],
        [rows[2].pk, rows[1].pk],
        [rows[0].pk],
    ]
    assert third["next"] is None
    assert "cursor" in parse_qs(urlparse(first["next"]).query)
    assert [r["id"] for r in user_client.get(second["previous"]).json()["results"]] == [
        rows[4].pk,
        rows[3].pk,
    ]


@pytest.mark.parametrize("kind", ["grant", "debit"])
def test_kind_filter(user_client, user, staff, kind):
    give(user, "2", staff)
    take_turn(session=ChatSessionFactory(owner=user), user=user, content="x")

    results = user_client.get(TX, {"kind": kind}).json()["results"]

    assert [r["kind"] for r in results] == [kind]


def test_date_filters_are_inclusive_after_and_exclusive_before(user_client, user, staff, monkeypatch):
    jan1 = give_at(monkeypatch, user, "1", staff, datetime(2026, 1, 1, 0, 0, tzinfo=UTC))
    jan2 = give_at(monkeypatch, user, "2", staff, datetime(2026, 1, 2, 12, 0, tzinfo=UTC))
    jan3 = give_at(monkeypatch, user, "3", staff, datetime(2026, 1, 3, 0, 0, tzinfo=UTC))

    def ids(**params):
        return [r["id"] for r in user_client.get(TX, params).json()["results"]]

    assert ids(created_after="2026-01-01") == [jan3.pk, jan2.pk, jan1.pk]
    assert ids(created_after="2026-01-01T00:00:01Z") == [jan3.pk, jan2.pk]
    assert ids(created_before="2026-01-03") == [jan2.pk, jan1.pk]
    assert ids(created_after="2026-01-02", created_before="2026-01-03") == [jan2.pk]
    assert ids(created_after="2026-01-02T12:00:00") == [jan3.pk, jan2.pk]  # naive means UTC
    assert ids(created_before="2026-01-02T13:00:00+01:00") == [jan1.pk]  # 12:00 UTC, exclusive
    assert ids(created_before="2026-01-02T13:00:01+01:00") == [jan2.pk, jan1.pk]
    assert ids(created_after="2026-01-04") == []


@pytest.mark.parametrize(
    "query",
    [
        "kind=gift",
        "kind=GRANT",
        "kind=grant%00",
        "created_after=yesterday",
        "created_after=2026-02-30",
        "created_after=2026-01-01T25:00",
        "created_after=2026-13-01",
        "created_after=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-01-06",  # full-width digits
        "created_after=2026-1-6",
        "created_after=%202026-01-06",
        "created_before=2026-01-01T00:00:00%2B99:00",
        "created_before=0001-01-01T00:00:00%2B01:00",
        "created_before=9999-12-31T23:59:59-01:00",
        "created_before=%00",
        "created_after=2026-01-01%00",
        "cursor=not-a-cursor",
        "cursor=%00",
        "page_size=1%00",
        "unrelated=%00",
        "na%00me=1",
    ],
)
def test_malformed_filters_are_400_never_500_or_empty(user_client, user, staff, query):
    give(user, "1", staff)

    response = user_client.get(f"{TX}?{query}")

    assert response.status_code == 400, response.content
    assert response.json()  # names the parameter and says what is wrong


def test_unknown_kind_names_the_choices(user_client):
    body = user_client.get(TX, {"kind": "gift"}).json()

    assert list(body) == ["kind"]
    assert "gift" in body["kind"][0]


@pytest.mark.parametrize("path", [TX, "/api/v1/users/me/wallet"])
def test_ledger_requires_authentication(api_client, path):
    assert api_client.get(path).status_code == 401


def test_ledger_is_read_only(user_client):
    assert user_client.post(TX, {}, format="json").status_code == 405
    assert user_client.post("/api/v1/users/me/wallet", {}, format="json").status_code == 405


def test_transactions_page_query_budget(token_client, user, staff, django_assert_max_num_queries):
    for n in range(30):
        give(user, "1", staff if n % 2 else StaffUserFactory())

    # token, one joined page (initiators selected with it): no query per row.
    with django_assert_max_num_queries(2):
        response = token_client.get(TX, {"kind": "grant", "created_after": "2000-01-01"})
    assert len(response.json()["results"]) == 30


def test_wallet_query_budget(token_client, django_assert_max_num_queries):
    # the token with its user, the wallet with its caps, its live lots
    with django_assert_max_num_queries(3):
        assert token_client.get("/api/v1/users/me/wallet").status_code == 200


def test_an_unencoded_plus_in_an_offset_gets_a_helpful_400(user_client):
    body = user_client.get(f"{TX}?created_after=2026-01-01T00:00:00+01:00").json()

    assert "send a '+' offset URL-encoded" in body["created_after"][0]
    assert user_client.get(f"{TX}?created_after=2026-01-01T00:00:00%2B01:00").status_code == 200
