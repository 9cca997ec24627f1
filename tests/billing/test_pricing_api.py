"""Staff pricing API: list, create, read and change per-model prices; history keeps its price snapshot."""

from decimal import Decimal

import pytest

from billing import services
from billing.models import CreditTransaction, LLMCallEvent, ModelPrice
from tests.factories import ModelPriceFactory

LIST_URL = "/api/v1/admin/pricing/"


def detail_url(model, slash="/"):
    return f"{LIST_URL}{model}{slash}"


def new_price(**overrides):
    return {"model": "gpt-4.1-mini", "input_price_per_1k": "0.4", "output_price_per_1k": "1.6", **overrides}


# --- permissions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, url",
    [("get", LIST_URL), ("post", LIST_URL), ("get", detail_url("echo-1")), ("patch", detail_url("echo-1"))],
)
def test_pricing_refuses_anonymous_with_401_and_users_with_403(method, url, api_client, user_client):
    before = list(ModelPrice.objects.values_list("model", "input_price_per_1k", "active"))
    body = new_price(active=False) if method == "post" else {"input_price_per_1k": "9", "active": False}

    assert getattr(api_client, method)(url, body, format="json").status_code == 401
    assert getattr(user_client, method)(url, body, format="json").status_code == 403
    assert list(ModelPrice.objects.values_list("model", "input_price_per_1k", "active")) == before


# --- list and read ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/v1/admin/pricing/", "/api/v1/admin/pricing"])
def test_pricing_list_is_paginated_and_ordered_by_model(staff_client, url):
    ModelPriceFactory(model="zeta-1", input_price_per_1k=Decimal("0"), active=False)
    ModelPriceFactory(model="alpha-2")

    response = staff_client.get(url)

    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None and body["previous"] is None
    # echo-1 is priced by a data migration.
    assert [p["model"] for p in body["results"]] == ["alpha-2", "echo-1", "zeta-1"]
    assert body["results"][2] == {
        "model": "zeta-1",
        "input_price_per_1k": "0.000000",
        "output_price_per_1k": "1.500000",
        "active": False,
        "created_at": body["results"][2]["created_at"],
        "updated_at": body["results"][2]["updated_at"],
    }


@pytest.mark.parametrize("slash", ["", "/"])
def test_pricing_detail_finds_models_with_dots_in_their_name(staff_client, slash):
    ModelPriceFactory(model="gpt-4.1-mini", input_price_per_1k=Decimal("0.4"))

    response = staff_client.get(detail_url("gpt-4.1-mini", slash))

    assert response.status_code == 200
    assert response.json()["model"] == "gpt-4.1-mini"
    assert response.json()["input_price_per_1k"] == "0.400000"


@pytest.mark.parametrize("path", ["openai%2Fgpt-4o", "openai/gpt-4o", "openai/gpt-4o/"])
def test_pricing_detail_finds_models_with_slashes_in_their_name(staff_client, path):
    ModelPriceFactory(model="openai/gpt-4o")

    response = staff_client.get(f"{LIST_URL}{path}")

    assert response.status_code == 200
    assert response.json()["model"] == "openai/gpt-4o"


def test_pricing_detail_of_unknown_model_is_404(staff_client):
    response = staff_client.get(detail_url("no-such-model"))

    assert response.status_code == 404
    assert "no-such-model" in response.json()["detail"]


# --- create ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/v1/admin/pricing/", "/api/v1/admin/pricing"])
def test_pricing_create_prices_a_new_model(staff_client, url):
    response = staff_client.post(url, new_price(), format="json")

    assert response.status_code == 201
    assert response.json()["model"] == "gpt-4.1-mini"
    assert response.json()["input_price_per_1k"] == "0.400000"
    assert response.json()["output_price_per_1k"] == "1.600000"
    assert response.json()["active"] is True
    price = ModelPrice.objects.get(model="gpt-4.1-mini")
    assert (price.input_price_per_1k, price.output_price_per_1k, price.active) == (
        Decimal("0.4"),
        Decimal("1.6"),
        True,
    )


def test_pricing_create_accepts_free_and_inactive_models(staff_client):
    response = staff_client.post(
        LIST_URL, new_price(input_price_per_1k=0, output_price_per_1k="0.000000", active=False), format="json"
    )

    assert response.status_code == 201
    assert response.json()["active"] is False
    assert response.json()["input_price_per_1k"] == "0.000000"


def test_pricing_create_refuses_a_model_that_already_has_a_price(staff_client):
    response = staff_client.post(LIST_URL, new_price(model="echo-1", input_price_per_1k="99"), format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "model_already_priced"
    assert "already has a price" in response.json()["detail"]
    assert ModelPrice.objects.get(model="echo-1").input_price_per_1k == Decimal("1")


BAD_PRICES = ["-0.1", -1, "1e3", "NaN", "Infinity", "0.0000001", "", "１", True, None, [1], "1,5"]


@pytest.mark.parametrize("field", ["input_price_per_1k", "output_price_per_1k"])
@pytest.mark.parametrize("value", BAD_PRICES)
def test_pricing_create_refuses_bad_prices_and_writes_nothing(staff_client, field, value):
    response = staff_client.post(LIST_URL, new_price(**{field: value}), format="json")

    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not ModelPrice.objects.filter(model="gpt-4.1-mini").exists()


@pytest.mark.parametrize(
    "model", ["", "has space", "/leading-slash", "trailing/", "x" * 101, 5, None, "nul\x00l"]
)
def test_pricing_create_refuses_bad_model_names(staff_client, model):
    count = ModelPrice.objects.count()

    response = staff_client.post(LIST_URL, new_price(model=model), format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["model"]
    assert ModelPrice.objects.count() == count


NOT_ENDING_IN_A_LETTER_OR_DIGIT = ["gpt-", "gpt.", "a@", "b+", "c:", "d_", "openai/gpt-4o-"]
MODEL_NAMES = ["a", "7", "gpt-4.1-mini", "openai/gpt-4o", "claude-3-5-sonnet@20240620", "a.b_c:d@e+f/g-h"]


@pytest.mark.parametrize("model", NOT_ENDING_IN_A_LETTER_OR_DIGIT)
def test_pricing_create_refuses_a_model_name_not_ending_in_a_letter_or_digit(staff_client, model):
    # docs/api.md and the 400's words say "starting and ending with a letter or digit"; these were 201.
    response = staff_client.post(LIST_URL, new_price(model=model), format="json")

    assert response.status_code == 400
    assert "ends with a letter or digit" in response.json()["model"][0]
    assert not ModelPrice.objects.filter(model=model).exists()


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_pricing_create_accepts_model_names_as_documented(staff_client, model):
    assert staff_client.post(LIST_URL, new_price(model=model), format="json").status_code == 201


def test_the_schemas_model_name_pattern_is_the_rule_the_api_applies():
    import re

    from drf_spectacular.generators import SchemaGenerator

    schemas = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    for component in ("ModelPriceRequest", "ChatSessionRequest"):
        pattern = schemas[component]["properties"]["model"]["pattern"]
        assert all(re.search(pattern, name) for name in MODEL_NAMES), component
        assert not any(re.search(pattern, name) for name in NOT_ENDING_IN_A_LETTER_OR_DIGIT), component


@pytest.mark.parametrize("active", ["true", 1, "yes", None])
def test_pricing_create_refuses_non_boolean_active(staff_client, active):
    response = staff_client.post(LIST_URL, new_price(active=active), format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["active"]
    assert not ModelPrice.objects.filter(model="gpt-4.1-mini").exists()


def test_pricing_create_requires_model_and_both_prices(staff_client):
    response = staff_client.post(LIST_URL, {}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"model", "input_price_per_1k", "output_price_per_1k"}


# --- change ----------------------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_pricing_patch_changes_only_the_given_fields(staff_client, slash):
    ModelPriceFactory(
        model="gpt-4.1-mini", input_price_per_1k=Decimal("0.4"), output_price_per_1k=Decimal("1.6")
    )

    response = staff_client.patch(
        detail_url("gpt-4.1-mini", slash), {"output_price_per_1k": "2.5"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["input_price_per_1k"] == "0.400000"
    assert response.json()["output_price_per_1k"] == "2.500000"
    price = ModelPrice.objects.get(model="gpt-4.1-mini")
    assert (price.input_price_per_1k, price.output_price_per_1k) == (Decimal("0.4"), Decimal("2.5"))


def test_pricing_patch_can_deactivate_a_model(staff_client):
    response = staff_client.patch(detail_url("echo-1"), {"active": False}, format="json")

    assert response.status_code == 200
    assert ModelPrice.objects.get(model="echo-1").active is False


def test_pricing_patch_refuses_a_rename(staff_client):
    response = staff_client.patch(
        detail_url("echo-1"), {"model": "echo-2", "input_price_per_1k": "5"}, format="json"
    )

    assert response.status_code == 400
    assert "cannot be changed" in response.json()["model"][0]
    price = ModelPrice.objects.get(model="echo-1")
    assert price.input_price_per_1k == Decimal("1")
    assert not ModelPrice.objects.filter(model="echo-2").exists()


@pytest.mark.parametrize(
    "body", [{"input_price_per_1k": "-1"}, {"output_price_per_1k": "1e2"}, {"active": "no"}]
)
def test_pricing_patch_refuses_bad_values_and_changes_nothing(staff_client, body):
    before = ModelPrice.objects.values("input_price_per_1k", "output_price_per_1k", "active").get(
        model="echo-1"
    )

    response = staff_client.patch(detail_url("echo-1"), body, format="json")

    assert response.status_code == 400
    assert list(response.json()) == list(body)
    after = ModelPrice.objects.values("input_price_per_1k", "output_price_per_1k", "active").get(
        model="echo-1"
    )
    assert after == before


def test_pricing_patch_of_unknown_model_is_404(staff_client):
    response = staff_client.patch(detail_url("no-such-model"), {"active": False}, format="json")

    assert response.status_code == 404
    assert not ModelPrice.objects.filter(model="no-such-model").exists()


@pytest.mark.parametrize("method", ["put", "delete"])
def test_pricing_detail_offers_no_replace_or_delete(staff_client, method):
    response = getattr(staff_client, method)(detail_url("echo-1"), new_price(model="echo-1"), format="json")

    assert response.status_code == 405
    assert ModelPrice.objects.filter(model="echo-1").exists()


def test_price_change_never_alters_recorded_calls_or_their_debits(staff_client, user):
    price = ModelPriceFactory(
        model="gpt-4.1-mini", input_price_per_1k=Decimal("0.4"), output_price_per_1k=Decimal("1.6")
    )
    before = services.charge(user=user, price=price, provider="openai", input_tokens=1000, output_tokens=500)

    response = staff_client.patch(
        detail_url("gpt-4.1-mini"), {"input_price_per_1k": "4", "output_price_per_1k": "16"}, format="json"
    )
    after = services.charge(
        user=user,
        price=ModelPrice.objects.get(model="gpt-4.1-mini"),
        provider="openai",
        input_tokens=1000,
        output_tokens=500,
    )

    assert response.status_code == 200
    old_event = LLMCallEvent.objects.get(pk=before.event.pk)
    assert (old_event.input_price_per_1k, old_event.output_price_per_1k, old_event.cost) == (
        Decimal("0.4"),
        Decimal("1.6"),
        Decimal("1.2"),
    )
    assert CreditTransaction.objects.get(llm_call=old_event).amount == Decimal("-1.2")
    new_event = LLMCallEvent.objects.get(pk=after.event.pk)
    assert (new_event.input_price_per_1k, new_event.cost) == (Decimal("4"), Decimal("12"))


def test_pricing_create_losing_a_race_on_the_model_name_is_a_400_not_a_500(staff_client, monkeypatch):
    from django.db.models.query import QuerySet

    # The pre-check misses (another request created the row in between): the unique constraint decides.
    monkeypatch.setattr(QuerySet, "exists", lambda self: False)

    response = staff_client.post(LIST_URL, new_price(model="echo-1", input_price_per_1k="99"), format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "model_already_priced"
    assert "already has a price" in response.json()["detail"]
    assert ModelPrice.objects.get(model="echo-1").input_price_per_1k == Decimal("1")


def test_a_price_above_the_documented_maximum_is_refused(staff_client):
    # The schema's `maximum` is what validation applies (schemathesis found 99999999999999.02 accepted).
    response = staff_client.post(
        "/api/v1/admin/pricing/",
        {"model": "huge-1", "input_price_per_1k": "0", "output_price_per_1k": "99999999999999.02"},
        format="json",
    )

    assert response.status_code == 400
    assert "output_price_per_1k" in response.json()
    assert not ModelPrice.objects.filter(model="huge-1").exists()


@pytest.mark.parametrize("field", ["input_price_per_1k", "output_price_per_1k"])
def test_a_price_whose_calls_could_overflow_the_money_columns_is_refused(staff_client, field):
    # 99999999999999 per 1k passed (the old maximum): its first call's hold overflowed numeric(20,6), a 500.
    response = staff_client.post(
        LIST_URL, new_price(model="huge-1", **{field: "99999999999999"}), format="json"
    )

    assert response.status_code == 400
    assert response.json() == {field: ["Ensure this value is less than or equal to 1000000."]}
    assert not ModelPrice.objects.filter(model="huge-1").exists()


def test_the_largest_price_is_accepted_and_a_millionth_more_is_refused(staff_client):
    from billing.pricing import PRICE_MAX

    at_most = staff_client.post(
        LIST_URL,
        new_price(model="dear-1", input_price_per_1k=str(PRICE_MAX), output_price_per_1k="1000000.000000"),
        format="json",
    )
    beyond = staff_client.patch(
        detail_url("dear-1"), {"output_price_per_1k": "1000000.000001"}, format="json"
    )

    assert at_most.status_code == 201
    assert beyond.status_code == 400 and "output_price_per_1k" in beyond.json()
    assert ModelPrice.objects.get(model="dear-1").output_price_per_1k == Decimal(PRICE_MAX)


def test_the_schema_documents_the_largest_price():
    from drf_spectacular.generators import SchemaGenerator

    from billing.pricing import PRICE_MAX

    schemas = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    for component in ("ModelPriceRequest", "PatchedModelPriceRequest"):
        for field in ("input_price_per_1k", "output_price_per_1k"):
            number = next(
                s for s in schemas[component]["properties"][field]["oneOf"] if s["type"] == "number"
            )
            assert number["maximum"] == PRICE_MAX == 1_000_000
