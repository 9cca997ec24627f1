"""The auth API: register, token and me, as API.md pins them."""

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from knox.crypto import hash_token
from knox.models import AuthToken

from billing.models import CreditTransaction, Wallet
from tests.factories import DEFAULT_PASSWORD, StaffUserFactory, UserFactory

User = get_user_model()
pytestmark = pytest.mark.django_db

GOOD = {"username": "ada", "email": "ada@example.com", "password": "analytical-engine-1843"}


@pytest.mark.parametrize("path", ["/api/v1/auth/register", "/api/v1/auth/register/"])
def test_register_creates_user_wallet_and_token(api_client, path):
    response = api_client.post(path, GOOD, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "username", "email", "token"}
    user = User.objects.get(pk=body["id"])
    assert (body["username"], body["email"]) == ("ada", "ada@example.com")
    # Stored as a digest only: the key the client got is nowhere in the table.
    assert AuthToken.objects.get(user=user).digest == hash_token(body["token"])
    assert user.check_password(GOOD["password"])
    assert Wallet.objects.get(user=user).balance == 0
    assert not CreditTransaction.objects.filter(wallet__user=user).exists()


@override_settings(STARTING_CREDITS=Decimal("5"))
def test_register_grants_starting_credits_as_a_system_grant(api_client):
    response = api_client.post("/api/v1/auth/register", GOOD, format="json")

    assert response.status_code == 201
    row = CreditTransaction.objects.get(wallet__user_id=response.json()["id"])
    assert (row.kind, row.amount, row.reason, row.initiated_by) == (
        "grant",
        Decimal("5"),
        "Starting credits",
        None,
    )


def test_registered_token_authenticates(api_client):
    token = api_client.post("/api/v1/auth/register", GOOD, format="json").json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    assert api_client.get("/api/v1/auth/me").json()["username"] == "ada"


@override_settings(SIGNUP_ENABLED=False)
def test_register_is_forbidden_when_signup_disabled(api_client):
    response = api_client.post("/api/v1/auth/register", GOOD, format="json")

    assert response.status_code == 403
    assert "disabled" in response.json()["detail"]
    assert not User.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"password": "short"}, "password"),
        ({"password": "password123"}, "password"),  # too common
        ({"password": "12345678901234"}, "password"),  # entirely numeric
        ({"password": "ada@example.com"}, "password"),  # too similar to the email
        ({"email": "not-an-email"}, "email"),
        ({"username": "has spaces!"}, "username"),
        ({"username": 12345}, "username"),
        ({"password": 123456789012}, "password"),
        ({"username": "ada\x00"}, "username"),
        ({"username": "x" * 151}, "username"),
    ],
)
def test_register_rejects_bad_input_and_writes_nothing(api_client, change, field):
    response = api_client.post("/api/v1/auth/register", {**GOOD, **change}, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not User.objects.exists()


@pytest.mark.parametrize("missing", ["username", "email", "password"])
def test_register_requires_each_field(api_client, missing):
    body = {k: v for k, v in GOOD.items() if k != missing}

    response = api_client.post("/api/v1/auth/register", body, format="json")

    assert response.status_code == 400
    assert response.json()[missing] == ["This field is required."]
    assert not User.objects.exists()


def test_register_refuses_a_taken_username(api_client):
    UserFactory(username="ada")

    response = api_client.post("/api/v1/auth/register", GOOD, format="json")

    assert response.status_code == 400
    assert response.json()["username"] == ["A user with that username already exists."]
    assert User.objects.count() == 1


@pytest.mark.parametrize("raw", ["", "[1, 2]", '{"username": NaN}', '{"a": 1, "a": 2}', "not json"])
def test_register_rejects_malformed_json(api_client, raw):
    response = api_client.generic("POST", "/api/v1/auth/register", raw, content_type="application/json")

    assert response.status_code == 400
    assert not User.objects.exists()


def test_register_rejects_a_body_over_one_megabyte(api_client):
    body = {**GOOD, "email": "a" * (1024 * 1024) + "@example.com"}

    response = api_client.post("/api/v1/auth/register", body, format="json")

    assert response.status_code == 413
    assert not User.objects.exists()


@pytest.mark.parametrize("path", ["/api/v1/auth/token", "/api/v1/auth/token/"])
def test_token_exchanges_credentials_for_the_users_token(api_client, user, path):
    response = api_client.post(path, {"username": user.username, "password": DEFAULT_PASSWORD}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expiry"}
    assert AuthToken.objects.get(user=user).digest == hash_token(body["token"])
    # Each login is a token of its own, so logging out one client leaves the others signed in.
    again = api_client.post(path, {"username": user.username, "password": DEFAULT_PASSWORD}, format="json")
    assert again.json()["token"] != body["token"]
    assert AuthToken.objects.filter(user=user).count() == 2


@pytest.mark.parametrize(
    "body",
    [
        {"username": "user-x", "password": "wrong"},
        {"username": "nobody", "password": DEFAULT_PASSWORD},
        {"username": "user-x"},
        {"username": "user-x", "password": 42},
        {},
    ],
)
def test_token_refuses_bad_credentials_with_400(api_client, body):
    UserFactory(username="user-x")

    response = api_client.post("/api/v1/auth/token", body, format="json")

    assert response.status_code == 400
    assert not AuthToken.objects.exists()


@pytest.mark.parametrize(
    "raw", ['{"username": "u", "password": NaN}', "[]", "", '{"username": "u", "username": "v"}']
)
def test_token_rejects_malformed_json(api_client, raw):
    response = api_client.generic("POST", "/api/v1/auth/token", raw, content_type="application/json")

    assert response.status_code == 400
    assert not AuthToken.objects.exists()


def test_token_refuses_an_inactive_user(api_client):
    UserFactory(username="gone", is_active=False)

    response = api_client.post(
        "/api/v1/auth/token", {"username": "gone", "password": DEFAULT_PASSWORD}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": ["Unable to log in with the provided username and password."]
    }


@pytest.mark.parametrize("path", ["/api/v1/auth/me", "/api/v1/auth/me/"])
def test_me_shows_identity_and_wallet(token_client, user, path):
    response = token_client.get(path)

    assert response.status_code == 200
    assert response.json() == {
        "id": user.pk,
        "username": user.username,
        "email": user.email,
        "is_staff": False,
        "wallet": {"balance": "0.000000", "low_balance": True},
    }


@override_settings(LOW_BALANCE_THRESHOLD=Decimal("1.000000"))
def test_me_reports_a_healthy_wallet_and_staff_flag(api_client):
    staff = StaffUserFactory()
    Wallet.objects.filter(user=staff).update(balance=Decimal("12.5"))
    api_client.force_authenticate(staff)

    body = api_client.get("/api/v1/auth/me").json()

    assert body["is_staff"] is True
    assert body["wallet"] == {"balance": "12.500000", "low_balance": False}


def test_me_requires_authentication(api_client):
    assert api_client.get("/api/v1/auth/me").status_code == 401


def test_me_refuses_a_bad_token(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    assert api_client.get("/api/v1/auth/me").status_code == 401


def test_me_query_budget(token_client, django_assert_max_num_queries):
    # One for the token (with its user), one for the wallet.
    with django_assert_max_num_queries(2):
        assert token_client.get("/api/v1/auth/me").status_code == 200


def test_register_service_reports_a_username_won_by_a_concurrent_signup():
    from accounts.services import UsernameTaken, register_user

    UserFactory(username="ada")

    with pytest.raises(UsernameTaken):
        register_user(username="ada", email="other@example.com", password=GOOD["password"])
    assert User.objects.filter(username="ada").count() == 1
    assert Wallet.objects.count() == 1


def test_register_answers_400_when_the_unique_index_catches_a_race(api_client, monkeypatch):
    from rest_framework.validators import UniqueValidator

    UserFactory(username="ada")
    # The serializer's check passes (as it would for two simultaneous requests); the index decides.
    monkeypatch.setattr(UniqueValidator, "__call__", lambda self, value, field: None)

    response = api_client.post("/api/v1/auth/register", GOOD, format="json")

    assert response.status_code == 400
    assert response.json() == {"username": ["A user with that username already exists."]}
    assert User.objects.count() == 1


# --- a username as stored: NFKC-normalized before it is validated and checked for uniqueness ----------

# "\u00ba\u00d6\u00a0" (masculine ordinal, O with diaeresis, no-break space) is stored as "oÖ": the
# space is trimmed, and NFKC makes the ordinal a plain "o".
LOOKALIKE = "\u00ba\u00d6\u00a0"


def test_register_refuses_a_name_that_is_taken_once_normalized(api_client):
    first = api_client.post("/api/v1/auth/register", {**GOOD, "username": "oÖ"}, format="json")
    assert first.status_code == 201, first.content
    users, tokens = User.objects.count(), AuthToken.objects.count()

    response = api_client.post(
        "/api/v1/auth/register",
        {**GOOD, "username": LOOKALIKE, "email": "other@example.com"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"username": ["A user with that username already exists."]}
    assert (User.objects.count(), AuthToken.objects.count(), Wallet.objects.count()) == (users, tokens, users)


def test_register_stores_and_answers_the_normalized_name(api_client):
    response = api_client.post("/api/v1/auth/register", {**GOOD, "username": LOOKALIKE}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["username"] == "oÖ"
    assert User.objects.get(pk=response.json()["id"]).username == "oÖ"


def test_register_refuses_a_name_whose_normalized_form_breaks_the_rules(api_client):
    # "½" passes the validator as typed (a numeric character), but is stored as "1⁄2" (fraction slash).
    response = api_client.post("/api/v1/auth/register", {**GOOD, "username": "½"}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"username"}
    assert not User.objects.exists()


def test_register_service_reports_a_lookalike_won_by_a_concurrent_signup():
    from accounts.services import UsernameTaken, register_user

    UserFactory(username="oÖ")

    with pytest.raises(UsernameTaken):
        register_user(username="\u00ba\u00d6", email="other@example.com", password=GOOD["password"])
    assert User.objects.count() == 1


# --- the published username pattern says what the server accepts -------------------------------------


@pytest.fixture(scope="module")
def username_schema(django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        schema = SchemaGenerator().get_schema(request=None, public=True)
    return schema["components"]["schemas"]["RegisterRequest"]["properties"]["username"]


def _patterns(username_schema) -> list[str]:
    return [branch["pattern"] for branch in username_schema["anyOf"]]


def _matches_the_schema(username_schema, username: str) -> bool:
    return any(re.fullmatch(pattern, username) for pattern in _patterns(username_schema))


def test_the_published_username_patterns_read_the_same_in_ecma_262_and_python(username_schema):
    # OpenAPI patterns are ECMA-262 (no `u` flag): its \w, \d, \s and \b differ from Python's on
    # non-ASCII text, so the patterns use none of them and `re` below reads them as a client does.
    assert "pattern" not in username_schema  # the validator's ^[\w.@+-]+$ is not published
    for pattern in _patterns(username_schema):
        assert re.search(r"\\[wWdDsSbBpPuU]", pattern) is None, pattern


@pytest.mark.parametrize("username", ["oÖ", "Ⱦ", "名前", "Ωmega_1", "a.b+c@d-e_f", "𠀀"])
def test_a_username_the_server_accepts_matches_the_published_schema(api_client, username_schema, username):
    response = api_client.post("/api/v1/auth/register", {**GOOD, "username": username}, format="json")

    assert response.status_code == 201, response.content
    assert _matches_the_schema(username_schema, username)
    assert len(username) <= username_schema["maxLength"]


@pytest.mark.parametrize("username", ["a b", "a!b", "a/b", "a:b", "a[b", "a`b", "a~b", "a\tb", "Ö!"])
def test_a_username_outside_the_published_schema_is_refused(api_client, username_schema, username):
    assert not _matches_the_schema(username_schema, username)

    response = api_client.post("/api/v1/auth/register", {**GOOD, "username": username}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"username"}
