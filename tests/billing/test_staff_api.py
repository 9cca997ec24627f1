"""Staff wallet API: the wallet view, grants with validation and Idempotency-Key replays, permissions."""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from billing import services
from billing.models import CreditLot, CreditTransaction, Wallet
from tests.factories import StaffUserFactory, UserFactory, api_token, beyond_the_support_limit


def wallet_url(user_id, slash=""):
    return f"/api/v1/admin/wallets/{user_id}{slash}"


def grant_url(user_id, slash=""):
    return f"/api/v1/admin/wallets/{user_id}/grant{slash}"


def post_grant(client, user_id, body, key=None, slash=""):
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(grant_url(user_id, slash), body, format="json", headers=headers)


def post_raw(client, user_id, raw_json: str):
    return client.post(grant_url(user_id), raw_json, content_type="application/json")


def balance_of(user) -> Decimal:
    return Wallet.objects.get(user=user).balance


# --- permissions -----------------------------------------------------------------------------


@pytest.mark.parametrize("method, url", [("get", wallet_url), ("post", grant_url)])
def test_staff_wallet_endpoints_refuse_anonymous_with_401_and_users_with_403(
    method, url, api_client, user_client, user
):
    body = {"amount": "5", "reason": "Goodwill"}

    anonymous = getattr(api_client, method)(url(user.pk), body, format="json")
    not_staff = getattr(user_client, method)(url(user.pk), body, format="json")

    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == "Token"
    assert not_staff.status_code == 403
    assert "detail" in not_staff.json()
    assert not CreditTransaction.objects.exists()


def test_staff_wallet_accepts_a_staff_token(user, staff_user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(staff_user)}")

    assert client.get(wallet_url(user.pk)).status_code == 200
    assert post_grant(client, user.pk, {"amount": "1", "reason": "Token grant"}).status_code == 200


# --- the wallet view ---------------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_staff_wallet_shows_user_balance_and_newest_transactions(staff_client, staff_user, user, slash):
    services.grant(user=user, amount="3", reason="first", initiated_by=staff_user)
    services.grant(user=user, amount="0.5", reason="second", initiated_by=staff_user)

    response = staff_client.get(wallet_url(user.pk, slash))

    assert response.status_code == 200
    body = response.json()
    assert body["user"] == {"id": user.pk, "username": user.username, "email": user.email}
    assert body["balance"] == "3.500000"
    assert body["low_balance"] is False
    assert [t["reason"] for t in body["transactions"]] == ["second", "first"]
    newest = body["transactions"][0]
    assert newest["kind"] == "grant"
    assert newest["amount"] == "0.500000"
    assert newest["balance_after"] == "3.500000"
    assert newest["initiated_by"] == {"id": staff_user.pk, "username": staff_user.username}
    assert newest["llm_call"] is None


def test_staff_wallet_flags_low_balance_from_the_setting(staff_client, user, settings):
    settings.LOW_BALANCE_THRESHOLD = Decimal("0")
    assert staff_client.get(wallet_url(user.pk)).json()["low_balance"] is True
    settings.LOW_BALANCE_THRESHOLD = Decimal("-1")
    assert staff_client.get(wallet_url(user.pk)).json()["low_balance"] is False


def test_staff_wallet_lists_at_most_50_transactions_and_the_lots_in_three_queries(
    staff_client, staff_user, user, django_assert_max_num_queries
):
    for n in range(55):
        services.grant(user=user, amount="1", reason=f"grant {n}", initiated_by=staff_user)

    with django_assert_max_num_queries(3):
        response = staff_client.get(wallet_url(user.pk))

    transactions = response.json()["transactions"]
    assert len(transactions) == 50
    assert transactions[0]["reason"] == "grant 54"
    assert transactions[-1]["reason"] == "grant 5"
    assert response.json()["balance"] == "55.000000"


@pytest.mark.parametrize("user_id", ["987654", "99999999999999999999999"])
def test_staff_wallet_of_unknown_user_is_404(staff_client, user_id):
    response = staff_client.get(wallet_url(user_id))

    assert response.status_code == 404
    assert "No user" in response.json()["detail"]


# --- grants ----------------------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_grant_credits_the_wallet_and_attributes_the_staff_user(staff_client, staff_user, user, slash):
    response = post_grant(
        staff_client, user.pk, {"amount": "12.5", "reason": "  Support goodwill "}, slash=slash
    )

    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response
    body = response.json()
    assert body["balance"] == "12.500000"
    assert body["transaction"]["kind"] == "grant"
    assert body["transaction"]["amount"] == "12.500000"
    assert body["transaction"]["balance_after"] == "12.500000"
    assert body["transaction"]["reason"] == "Support goodwill"
    assert body["transaction"]["initiated_by"] == {"id": staff_user.pk, "username": staff_user.username}
    row = CreditTransaction.objects.get()
    assert (row.id, row.initiated_by_id, row.wallet.user_id) == (
        body["transaction"]["id"],
        staff_user.pk,
        user.pk,
    )
    assert balance_of(user) == Decimal("12.5")


@pytest.mark.parametrize(
    "amount, expected",
    [("10000", "10000.000000"), (10000, "10000.000000"), ("0.000001", "0.000001"), ("0.0120000", "0.012000")],
)
def test_grant_accepts_amounts_at_the_edges(staff_client, staff_user, user, amount, expected):
    beyond_the_support_limit(staff_user)  # the edge is the service's maximum, not SUPPORT_GRANT_LIMIT
    response = post_grant(staff_client, user.pk, {"amount": amount, "reason": "edge"})

    assert response.status_code == 200, response.json()
    assert response.json()["transaction"]["amount"] == expected


def test_grant_accepts_an_exact_json_number(staff_client, user):
    response = post_raw(staff_client, user.pk, '{"amount": 0.1, "reason": "exact"}')

    assert response.status_code == 200
    assert response.json()["balance"] == "0.100000"


BAD_AMOUNTS = [
    0,
    "0",
    -1,
    "-5",
    "10000.000001",
    10001,
    "0.0000001",
    "1e3",
    "NaN",
    "nan",
    "Infinity",
    "-inf",
    "１０",
    "١٠",
    "1_000",
    "+5",
    " 5",
    "",
    "   ",
    "five",
    True,
    False,
    None,
    [5],
    {"value": 5},
]


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_grant_refuses_bad_amounts_on_the_amount_field_and_writes_nothing(staff_client, user, amount):
    response = post_grant(staff_client, user.pk, {"amount": amount, "reason": "bad"}, key="k-1")

    assert response.status_code == 400
    assert list(response.json()) == ["amount"]
    assert isinstance(response.json()["amount"][0], str)
    assert not CreditTransaction.objects.exists()
    assert balance_of(user) == 0


@pytest.mark.parametrize("raw", ['{"amount": 1e3, "reason": "x"}', '{"amount": 1E-2, "reason": "x"}'])
def test_grant_refuses_json_exponents_on_the_amount_field(staff_client, user, raw):
    response = post_raw(staff_client, user.pk, raw)

    assert response.status_code == 400
    assert "amount" in response.json()
    assert not CreditTransaction.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [
        '{"amount": NaN, "reason": "x"}',
        '{"amount": Infinity, "reason": "x"}',
        '{"amount": -Infinity, "reason": "x"}',
        '{"amount": 1, "amount": 2, "reason": "x"}',
        "[1, 2]",
        "not json",
    ],
)
def test_grant_refuses_malformed_json_bodies(staff_client, user, raw):
    response = post_raw(staff_client, user.pk, raw)

    assert response.status_code == 400
    assert not CreditTransaction.objects.exists()


def test_grant_requires_amount_and_reason(staff_client, user):
    response = post_grant(staff_client, user.pk, {})

    assert response.status_code == 400
    assert set(response.json()) == {"amount", "reason"}
    assert not CreditTransaction.objects.exists()


@pytest.mark.parametrize("reason", ["", "   ", None, 42, ["why"], "x" * 501, "bad\x00reason"])
def test_grant_refuses_bad_reasons_and_writes_nothing(staff_client, user, reason):
    response = post_grant(staff_client, user.pk, {"amount": "5", "reason": reason})

    assert response.status_code == 400
    assert list(response.json()) == ["reason"]
    assert not CreditTransaction.objects.exists()


def test_grant_accepts_a_500_character_reason(staff_client, user):
    assert post_grant(staff_client, user.pk, {"amount": "5", "reason": "x" * 500}).status_code == 200


def test_grant_to_unknown_user_is_404(staff_client):
    response = post_grant(staff_client, 987654, {"amount": "5", "reason": "nobody"})

    assert response.status_code == 404
    assert not CreditTransaction.objects.exists()


def test_grant_opens_a_missing_wallet_first(staff_client, user):
    # Only users loaded raw (fixtures) lack a wallet; a grant must not fail on them.
    Wallet.objects.filter(user=user).delete()

    response = post_grant(staff_client, user.pk, {"amount": "2", "reason": "late wallet"})

    assert response.status_code == 200
    assert balance_of(user) == Decimal("2")


# --- idempotency -----------------------------------------------------------------------------


def test_grant_replay_with_same_key_and_body_returns_first_result_and_grants_nothing_more(
    staff_client, staff_user, user
):
    body = {"amount": "10", "reason": "Refund for outage"}
    first = post_grant(staff_client, user.pk, body, key="outage-2026-01-05")
    # Another grant in between: the replay still answers the balance right after the first one.
    services.grant(user=user, amount="5", reason="unrelated", initiated_by=staff_user)

    replay = post_grant(
        staff_client, user.pk, {"amount": 10.0, "reason": "Refund for outage"}, key="outage-2026-01-05"
    )

    assert first.status_code == replay.status_code == 200
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert replay.json()["balance"] == "10.000000"
    assert CreditTransaction.objects.filter(idempotency_key="outage-2026-01-05").count() == 1
    assert balance_of(user) == Decimal("15")


@pytest.mark.parametrize(
    "changed", [{"amount": "11", "reason": "Refund for outage"}, {"amount": "10", "reason": "Other reason"}]
)
def test_grant_same_key_with_different_body_is_409(staff_client, user, changed):
    post_grant(staff_client, user.pk, {"amount": "10", "reason": "Refund for outage"}, key="k")

    response = post_grant(staff_client, user.pk, changed, key="k")

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"
    assert "different amount or reason" in response.json()["detail"]
    assert CreditTransaction.objects.count() == 1
    assert balance_of(user) == Decimal("10")


def test_grant_idempotency_keys_are_scoped_to_the_wallet(staff_client, user):
    other = UserFactory()

    post_grant(staff_client, user.pk, {"amount": "1", "reason": "same key"}, key="shared")
    response = post_grant(staff_client, other.pk, {"amount": "1", "reason": "same key"}, key="shared")

    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response
    assert CreditTransaction.objects.count() == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "ключ", "tab\tkey", "new\nline"])
def test_grant_refuses_an_invalid_idempotency_key(staff_client, user, key):
    response = staff_client.post(
        grant_url(user.pk), {"amount": "1", "reason": "r"}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )

    assert response.status_code == 400
    assert "printable ASCII" in response.json()["idempotency_key"][0]
    assert not CreditTransaction.objects.exists()


def test_grant_accepts_a_255_character_key(staff_client, user):
    response = post_grant(staff_client, user.pk, {"amount": "1", "reason": "r"}, key="~" * 255)

    assert response.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_grant_replays_racing_on_one_key_write_exactly_one_row():
    user, staff = UserFactory(), StaffUserFactory()
    threads_count = 20
    barrier = threading.Barrier(threads_count)
    results = []
    lock = threading.Lock()

    def attempt():
        client = APIClient()
        client.force_authenticate(staff)
        try:
            barrier.wait()
            response = post_grant(client, user.pk, {"amount": "7", "reason": "race"}, key="race-key")
            with lock:
                results.append((response.status_code, response.get("Idempotent-Replayed"), response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [status for status, _, _ in results] == [200] * threads_count
    assert [replayed for _, replayed, _ in results].count(None) == 1
    assert len({body["transaction"]["id"] for _, _, body in results}) == 1
    assert {body["balance"] for _, _, body in results} == {"7.000000"}
    assert CreditTransaction.objects.filter(wallet__user=user).count() == 1
    assert balance_of(user) == Decimal("7")


# --- the enforcement override ------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_wallet_shows_held_available_and_enforcement(staff_client, staff_user, user):
    services.grant(user=user, amount="5", reason="x", initiated_by=staff_user)
    services.reserve(user=user, amount=Decimal("2"))

    body = staff_client.get(wallet_url(user.pk)).json()

    assert (body["balance"], body["held"], body["available"]) == ("5.000000", "2.000000", "3.000000")
    assert body["enforcement"] == "default"


@pytest.mark.django_db
@pytest.mark.parametrize("slash", ["", "/"])
def test_staff_patch_sets_the_enforcement_override_and_logs_who(
    staff_client, staff_user, user, slash, caplog
):
    with caplog.at_level("INFO", logger="billing.services"):
        response = staff_client.patch(wallet_url(user.pk, slash), {"enforcement": "enforced"}, format="json")

    assert response.status_code == 200
    assert response.json()["enforcement"] == "enforced"
    assert Wallet.objects.get(user=user).enforcement == "enforced"
    record = next(r for r in caplog.records if r.getMessage() == "wallet enforcement changed")
    assert (record.changed_by, record.to) == (staff_user.pk, "enforced")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body", [{}, {"enforcement": "sometimes"}, {"enforcement": 1}, {"enforcement": None}]
)
def test_staff_patch_refuses_a_bad_enforcement_with_400(staff_client, user, body):
    response = staff_client.patch(wallet_url(user.pk), body, format="json")

    assert response.status_code == 400
    assert "enforcement" in response.json()
    assert Wallet.objects.get(user=user).enforcement == "default"


@pytest.mark.django_db
def test_staff_patch_is_staff_only(api_client, user_client, user):
    assert api_client.patch(wallet_url(user.pk), {"enforcement": "exempt"}, format="json").status_code == 401
    assert user_client.patch(wallet_url(user.pk), {"enforcement": "exempt"}, format="json").status_code == 403
    assert Wallet.objects.get(user=user).enforcement == "default"


def test_grant_same_key_with_other_lot_terms_is_a_replay(staff_client, user):
    """Only the amount and the reason must match (API.md): the lot keeps the terms first given."""
    first = post_grant(
        staff_client,
        user.pk,
        {"amount": "10", "reason": "Promo", "priority": 10, "category": "paid"},
        key="k",
    )

    replay = post_grant(staff_client, user.pk, {"amount": "10", "reason": "Promo"}, key="k")

    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert CreditTransaction.objects.count() == 1
    assert list(CreditLot.objects.values_list("priority", "category")) == [(10, "paid")]
