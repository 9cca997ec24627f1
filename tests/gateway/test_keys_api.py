"""The user's own API keys (users/me/keys) and the gateway's key authentication."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiKey
from billing.models import ModelPrice, SpendLimit
from tests.factories import UserFactory, token_client_for

pytestmark = pytest.mark.django_db

KEYS = "/api/v1/users/me/keys"


def test_create_shows_the_secret_once_and_stores_only_its_digest(user):
    client = token_client_for(user)
    response = client.post(KEYS, {"name": "laptop", "limit": "5", "limit_reset": "daily"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["key"].startswith("cdk_") and len(body["key"]) >= 4 + 32
    assert body["prefix"] == body["key"][:12]
    assert body["limit"] == "5.000000" and body["limit_reset"] == "daily"
    assert body["usage"] == "0.000000" and body["limit_remaining"] == "5.000000"
    key = ApiKey.objects.get(pk=body["id"])
    assert body["key"] not in (key.digest, key.prefix)
    assert key.spend_limit.kind == SpendLimit.Kind.KEY and key.spend_limit.wallet.user == user

    listed = client.get(KEYS).json()["results"]
    assert [k["id"] for k in listed] == [body["id"]] and "key" not in listed[0]
    assert "key" not in client.get(f"{KEYS}/{body['id']}").json()


def test_rename_change_limit_and_revoke(user):
    client = token_client_for(user)
    key_id = client.post(KEYS, {"name": "a"}, format="json").json()["id"]
    response = client.patch(
        f"{KEYS}/{key_id}", {"name": "b", "limit": "2.5", "limit_reset": "monthly"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "b" and response.json()["limit"] == "2.500000"
    assert response.json()["limit_reset"] == "monthly"
    response = client.patch(f"{KEYS}/{key_id}", {"limit": None}, format="json")
    assert response.json()["limit"] is None and response.json()["limit_reset"] == "monthly"
    assert client.delete(f"{KEYS}/{key_id}").status_code == 204
    assert client.get(KEYS).json()["results"] == []
    assert ApiKey.objects.get(pk=key_id).revoked_at is not None


def test_a_key_made_lifetime_counts_the_calls_of_detached_months(user, tmp_path):
    """A new period's spending is recounted from the per-key rollup: the events of a detached month
    are gone from the table, and a recount from them let the key spend its lifetime limit again."""
    from datetime import UTC, date, datetime

    from billing import partitions
    from billing.models import LLMCallEvent
    from billing.rollup import rebuild_usage_rollup
    from tests.factories import LLMCallEventFactory

    client = token_client_for(user)
    key = client.post(KEYS, {"name": "laptop", "limit": "10", "limit_reset": "monthly"}, format="json").json()
    spend_limit_id = ApiKey.objects.get(pk=key["id"]).spend_limit_id
    for month, cost in ((3, "2.5"), (4, "1")):
        LLMCallEventFactory(
            user=user,
            purpose=LLMCallEvent.Purpose.API,
            spend_limit_id=spend_limit_id,
            cost=Decimal(cost),
            created_at=datetime(2024, month, 14, 12, tzinfo=UTC),
            rollups=False,
        )
    rebuild_usage_rollup()
    partitions.detach_call_month(month=date(2024, 3, 1), export_to=tmp_path / "2024-03.csv")

    response = client.patch(f"{KEYS}/{key['id']}", {"limit_reset": None}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["limit_reset"] is None
    assert response.json()["usage"] == "3.500000" and response.json()["limit_remaining"] == "6.500000"


def test_another_users_key_is_404(user):
    other_key = token_client_for(UserFactory()).post(KEYS, {"name": "theirs"}, format="json").json()["id"]
    client = token_client_for(user)
    assert client.get(f"{KEYS}/{other_key}").status_code == 404
    assert client.patch(f"{KEYS}/{other_key}", {"name": "x"}, format="json").status_code == 404
    assert client.delete(f"{KEYS}/{other_key}").status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "a", "limit": "-1"}, "limit"),
        ({"name": "a", "limit": "abc"}, "limit"),
        ({"name": "a", "limit_reset": "hourly"}, "limit_reset"),
        ({"name": "a", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "a", "expires_at": "2099-12-31"}, "expires_at"),
        ({"name": "a", "expires_at": "2099-12-31T00:00:00Z\x00"}, "expires_at"),
        ({"name": "a\x00b"}, "name"),
    ],
)
def test_bad_key_requests_are_400_and_write_nothing(user, body, field):
    response = token_client_for(user).post(KEYS, body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not ApiKey.objects.exists() and not SpendLimit.objects.exists()


def test_keys_are_not_session_tokens(user, client):
    secret = token_client_for(user).post(KEYS, {"name": "k"}, format="json").json()["key"]
    assert client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401
    assert client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Token {secret}").status_code == 401


def _key(user, **fields):
    return token_client_for(user).post(KEYS, {"name": "k", **fields}, format="json").json()


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer nope", "Token abc", "Bearer cdk_unknown", "Basic eA=="]
)
def test_the_gateway_refuses_missing_malformed_and_unknown_keys_with_401(client, header):
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}
    response = client.get("/v1/models", **extra)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key" and error["param"] is None and error["message"]


def test_revoked_and_expired_keys_are_401(user, client):
    revoked = _key(user)
    token_client_for(user).delete(f"{KEYS}/{revoked['id']}")
    assert client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {revoked['key']}").status_code == 401
    expiring = _key(user, expires_at=(timezone.now() + timedelta(hours=1)).isoformat())
    ApiKey.objects.filter(pk=expiring["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {expiring['key']}").status_code == 401


def test_models_and_key(user, client):
    key = _key(user, limit="3", limit_reset="weekly")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key['key']}"}
    models = client.get("/v1/models", **auth).json()
    assert models["object"] == "list"
    echo = next(m for m in models["data"] if m["id"] == "echo-1")
    assert echo["object"] == "model" and set(echo["pricing"]) == {"input_per_1k", "output_per_1k"}
    assert client.get("/v1/models/echo-1", **auth).json()["id"] == "echo-1"
    assert client.get("/v1/models/nope", **auth).json()["error"]["code"] == "model_not_found"
    assert client.get("/v1/models/nope/", **auth).json()["error"]["code"] == "model_not_found"
    data = client.get("/v1/key", **auth).json()["data"]
    assert data["prefix"] == key["prefix"] and data["limit"] == "3.000000" and data["limit_reset"] == "weekly"
    assert data["usage"] == data["usage_daily"] == "0.000000" and data["limit_remaining"] == "3.000000"
    assert Decimal(data["balance"]) == Decimal(data["available"])
    assert ApiKey.objects.get(pk=key["id"]).last_used_at is not None


def test_a_model_whose_name_holds_a_slash_is_found_as_the_openai_client_asks_for_it(user, client):
    from openai._utils import path_template

    ModelPrice.objects.create(
        model="openai/gpt-4o", input_price_per_1k=Decimal("0.5"), output_price_per_1k=Decimal("1.5")
    )
    auth = {"HTTP_AUTHORIZATION": f"Bearer {_key(user)['key']}"}
    asked = "/v1" + path_template("/models/{model}", model="openai/gpt-4o")  # what models.retrieve() sends

    assert asked == "/v1/models/openai%2Fgpt-4o"
    for path in (asked, "/v1/models/openai/gpt-4o", "/v1/models/openai/gpt-4o/"):
        response = client.get(path, **auth)
        assert response.status_code == 200, path
        assert response.json()["id"] == "openai/gpt-4o"
    assert client.get("/v1/models/openai/nope", **auth).json()["error"]["code"] == "model_not_found"


def test_the_key_admin_lists_shows_calls_and_revokes(admin_client, user):
    key = _key(user, limit="2", limit_reset="monthly")
    assert admin_client.get("/admin/accounts/apikey/").status_code == 200
    page = admin_client.get(f"/admin/accounts/apikey/{key['id']}/change/")
    assert page.status_code == 200 and key["prefix"] in page.content.decode()
    chosen = {"action": "revoke", "_selected_action": [key["id"]]}
    asked = admin_client.post("/admin/accounts/apikey/", chosen)
    assert asked.status_code == 200 and "Revoke 1 API key?" in asked.content.decode()
    assert ApiKey.objects.get(pk=key["id"]).revoked_at is None  # asked, not done
    response = admin_client.post("/admin/accounts/apikey/", {**chosen, "apply": "yes"}, follow=True)
    assert response.status_code == 200
    assert ApiKey.objects.get(pk=key["id"]).revoked_at is not None


def test_a_keys_page_revokes_it_after_asking_and_offers_no_save(admin_client, user):
    key = _key(user)
    page = admin_client.get(f"/admin/accounts/apikey/{key['id']}/change/").content.decode()
    assert 'id="revoke-key"' in page and 'name="_save"' not in page and 'name="_continue"' not in page
    url = f"/admin/accounts/apikey/{key['id']}/revoke/"

    asked = admin_client.get(url)
    assert asked.status_code == 200 and key["prefix"] in asked.content.decode()
    assert ApiKey.objects.get(pk=key["id"]).revoked_at is None
    done = admin_client.post(url, {"apply": "yes"})

    assert done.status_code == 302 and done["Location"] == f"/admin/accounts/apikey/{key['id']}/change/"
    assert ApiKey.objects.get(pk=key["id"]).revoked_at is not None
    after = admin_client.get(f"/admin/accounts/apikey/{key['id']}/change/").content.decode()
    assert 'id="revoke-key"' not in after
