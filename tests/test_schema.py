"""The OpenAPI schema of the whole project: generated and validated with warnings as errors."""

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema(tmp_path_factory, django_db_blocker):
    path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    with django_db_blocker.unblock():
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(path.read_text())


def test_schema_generates_without_warnings_and_validates(schema):
    assert schema["openapi"].startswith("3.")


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/api/v1/health/", {"get"}),
        ("/api/v1/auth/register/", {"post"}),
        ("/api/v1/auth/token/", {"post"}),
        ("/api/v1/auth/me/", {"get"}),
        ("/api/v1/sessions/", {"get", "post"}),
        ("/api/v1/sessions/{id}/", {"get", "patch", "delete"}),
        ("/api/v1/sessions/{session_pk}/turns/", {"get", "post"}),
        ("/api/v1/users/me/wallet/", {"get"}),
        ("/api/v1/users/me/transactions/", {"get"}),
        ("/api/v1/users/me/purchases/", {"get", "post"}),
        ("/api/v1/users/me/purchases/{id}/", {"get"}),
        ("/api/v1/payments/stripe/webhook/", {"post"}),
    ],
)
def test_every_user_endpoint_is_documented(schema, path, methods):
    assert methods <= set(schema["paths"][path])


def test_turn_documents_its_request_and_every_outcome(schema):
    post = schema["paths"]["/api/v1/sessions/{session_pk}/turns/"]["post"]

    assert {"201", "400", "402", "404", "413", "502", "504"} <= set(post["responses"])
    request = post["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert schema["components"]["schemas"][request]["required"] == ["content"]
    created = schema["components"]["schemas"]["CreatedTurn"]["properties"]
    assert {"usage", "balance_after", "low_balance", "user_message", "assistant_message"} <= set(created)
    refused = schema["components"]["schemas"]["InsufficientCredits"]["properties"]
    assert set(refused) == {"detail", "code", "balance", "available"}


def test_my_usage_by_key_documents_failed_calls(schema):
    """A key listed with 0 calls and 0 cost is explained by its failed calls: the schema says the field is there."""
    by_key = schema["components"]["schemas"]["KeyUsage"]
    assert {"key_id", "prefix", "name", "calls", "failed_calls", "cost"} == set(by_key["properties"])
    assert "failed" in by_key["properties"]["failed_calls"]["description"]


def test_token_auth_is_the_documented_scheme(schema):
    token = schema["components"]["securitySchemes"]["tokenAuth"]
    assert (token["type"], token["in"], token["name"]) == ("apiKey", "header", "Authorization")
    assert schema["paths"]["/api/v1/auth/me/"]["get"]["security"][0] == {"tokenAuth": []}
    assert schema["paths"]["/api/v1/auth/register/"]["post"].get("security") in (None, [], [{}])
    assert schema["paths"]["/api/v1/health/"]["get"].get("security") in (None, [], [{}])


def test_money_is_a_six_place_decimal_string(schema):
    balance = schema["components"]["schemas"]["Wallet"]["properties"]["balance"]
    assert (balance["type"], balance["pattern"]) == ("string", r"^-?\d+\.\d{6}$")


@pytest.mark.parametrize(
    ("component", "field"),
    [("GrantRequestRequest", "amount"), ("ModelPriceRequest", "input_price_per_1k")],
)
def test_money_in_a_request_is_documented_as_the_api_takes_it(schema, component, field):
    """Inputs are wider than answers (API.md amounts): documenting only the answer's form made
    schemathesis call an accepted "6" invalid data."""
    import re

    from core.money import AmountError, parse_amount

    branches = schema["components"]["schemas"][component]["properties"][field]["oneOf"]
    assert {branch["type"] for branch in branches} == {"string", "number"}
    pattern = re.compile(next(b["pattern"] for b in branches if b["type"] == "string"))
    for text in ["6", "12.5", "-3", "0.0120000", "1.123456", "0.1234567", "1e3", "1.", ".5", " 5", "１０"]:
        try:
            # Both fields refuse negative values, so their schema documents no sign.
            accepted = parse_amount(text) >= 0
        except AmountError:
            accepted = False
        assert bool(pattern.search(text)) == accepted, text


def test_schema_is_served(api_client):
    response = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    assert "/api/v1/sessions/{session_pk}/turns/" in response.json()["paths"]
