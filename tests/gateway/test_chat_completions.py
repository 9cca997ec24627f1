"""POST /v1/chat/completions through the test client: billing call by call, limits, validation, errors in OpenAI's shape."""

import json
from decimal import Decimal

import pytest

from billing.models import CreditHold, CreditTransaction, LLMCallEvent, SpendLimit, Wallet
from billing.reconcile import check_ledger
from sessions_app.providers import estimate_prompt_tokens
from tests.factories import ModelPriceFactory, close_unread, fund, token_client_for

pytestmark = pytest.mark.django_db

URL = "/v1/chat/completions"


@pytest.fixture
def key(user):
    fund(user, "10")
    return token_client_for(user).post("/api/v1/users/me/keys", {"name": "k"}, format="json").json()


def call(client, key, body, **extra):
    return client.post(
        URL,
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key['key']}",
        **extra,
    )


def hello(**fields):
    return {"model": "echo-1", "messages": [{"role": "user", "content": "Hello there"}], **fields}


def test_a_plain_call_is_billed_once_with_its_cost_in_usage_and_headers(client, user, key):
    before = Wallet.objects.get(user=user).balance
    response = call(client, key, hello(user="end-user-7"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Echo: Hello there",
        "refusal": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    cost = Decimal(body["usage"]["cost"])
    wallet = Wallet.objects.get(user=user)
    assert cost > 0 and before - wallet.balance == cost and wallet.held == 0
    assert response["X-Creditdesk-Cost"] == body["usage"]["cost"]
    assert response["X-Creditdesk-Balance"] == f"{wallet.balance:.6f}"
    event = LLMCallEvent.objects.get()
    assert event.purpose == "api" and event.spend_limit_id == SpendLimit.objects.get(kind="key").pk
    assert event.end_user == "end-user-7" and event.cost == cost
    assert CreditTransaction.objects.get(kind="debit").amount == -cost
    assert not CreditHold.objects.filter(status="held").exists()
    assert SpendLimit.objects.get(kind="key").spent == cost
    assert check_ledger().ok


def test_a_tool_call_is_passed_through_and_answered(client, key):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    body = {
        "model": "echo-1",
        "tools": tools,
        "messages": [{"role": "user", "content": 'call get_weather {"city": "Paris"}'}],
    }
    first = call(client, key, body).json()
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (tool_call,) = choice["message"]["tool_calls"]
    assert tool_call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    body["messages"] += [
        choice["message"],
        {"role": "tool", "tool_call_id": tool_call["id"], "content": "sunny"},
    ]
    second = call(client, key, body).json()
    assert second["choices"][0]["finish_reason"] == "stop"
    assert "sunny" in second["choices"][0]["message"]["content"]
    assert LLMCallEvent.objects.filter(purpose="api").count() == 2


def test_a_spent_key_limit_is_402_with_limit_source(client, user, key):
    SpendLimit.objects.filter(kind="key").update(amount=Decimal("0.000001"))
    assert call(client, key, hello()).status_code == 200  # nothing spent yet: the call may go
    response = call(client, key, hello())
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "insufficient_credits" and error["metadata"]["limit_source"] == "key_limit"
    assert LLMCallEvent.objects.count() == 1


def test_an_empty_wallet_under_enforcement_is_402(client, settings, user):
    settings.CREDIT_ENFORCEMENT_ENABLED = True
    key = token_client_for(user).post("/api/v1/users/me/keys", {"name": "k"}, format="json").json()
    response = call(client, key, hello())
    assert response.status_code == 402
    assert response.json()["error"]["metadata"]["limit_source"] == "wallet"
    assert not LLMCallEvent.objects.exists() and not CreditHold.objects.exists()


def test_a_spending_cap_refuses_gateway_calls_and_turns(client, user, key):
    token_client = token_client_for(user)
    response = token_client.patch(
        "/api/v1/users/me/wallet", {"spend_cap": "0.000001", "spend_cap_period": "day"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["spend_cap"]["amount"] == "0.000001"
    assert call(client, key, hello()).status_code == 200
    response = call(client, key, hello())
    assert response.status_code == 402
    assert response.json()["error"]["metadata"]["limit_source"] == "spend_cap"
    assert "reset_at" in response.json()["error"]["metadata"]
    session = token_client.post("/api/v1/sessions/", {}, format="json").json()
    turn = token_client.post(f"/api/v1/sessions/{session['id']}/turns/", {"content": "hi"}, format="json")
    assert turn.status_code == 402
    assert turn.json()["code"] == "spend_cap_reached" and "reset_at" in turn.json()


def test_an_unpriced_model_is_404(client, key):
    response = call(client, key, hello(model="gpt-nope"))
    assert response.status_code == 404
    assert (
        response.json()["error"]["code"] == "model_not_found" and response.json()["error"]["param"] == "model"
    )


@pytest.mark.parametrize(
    "change, param",
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": "a\x00b"}]}, "messages[0].content"),
        # Lone surrogates: were a 500 after the provider was called (a free call, or one charged
        # with its answer lost).
        ({"messages": [{"role": "user", "content": "a\udc00"}]}, "messages[0].content"),
        ({"user": "\ud800"}, "user"),
        ({"model": "echo-1\ud800"}, "model"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"\ud800": 1}}}]},
            "tools[0].function.parameters",
        ),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 100000}, "max_tokens"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"n": 2}, "n"),
        ({"tools": {"type": "function"}}, "tools"),
        ({"tools": [{"type": "function"}]}, "tools[0]"),
        ({"temperature": 3}, "temperature"),
        ({"model": None}, "model"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_bad_requests_are_400_naming_param_and_write_nothing(client, key, change, param):
    response = call(client, key, {**hello(), **change})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert not CreditHold.objects.exists() and not LLMCallEvent.objects.exists()


def test_not_json_and_oversized_bodies_are_openai_shaped(client, key):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key['key']}"}
    response = client.post(URL, "{nope", content_type="application/json", **auth)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    big = json.dumps(hello(messages=[{"role": "user", "content": "x" * (1024 * 1024)}]))
    response = client.post(URL, big, content_type="application/json", **auth)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    assert not CreditHold.objects.exists()


def test_throttled_per_key(client, settings, key):
    settings.THROTTLE_GATEWAY_RATE = "2/minute"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key['key']}"}
    codes = [client.get("/v1/models", **auth).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    response = client.get("/v1/models", **auth)
    assert response.json()["error"]["code"] == "rate_limited" and int(response["Retry-After"]) >= 1


def test_cors_for_allowed_origins(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://chat.example.com"]
    response = client.options(
        URL,
        HTTP_ORIGIN="https://chat.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, x-stainless-os",
    )
    assert response["Access-Control-Allow-Origin"] == "https://chat.example.com"
    assert "authorization" in response["Access-Control-Allow-Headers"]
    other = client.options(URL, HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert "Access-Control-Allow-Origin" not in other


# The key with its user and its limit (one join); the per-key throttle's one statement (core's rate
# limits); the reservation (billing's one statement: the wallet, the key's limit, the caps, the
# price); the charge (one statement: the event, the hold, the wallet, the limits, the debit, the
# rollups), which commits as it ends: no BEGIN or COMMIT. last_used_at is written at most once a minute.
GATEWAY_CALL_QUERIES = 4


def test_a_plain_gateway_call_query_budget(client, key, django_assert_num_queries):
    call(client, key, hello())  # warm-up: last_used_at written, the price known
    with django_assert_num_queries(GATEWAY_CALL_QUERIES):
        response = call(client, key, hello())
    assert response.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_plain_gateway_call_query_budget_in_a_real_transaction(client, key, django_assert_num_queries):
    """As served: Django logs BEGIN and COMMIT too, and the call makes neither."""
    ModelPriceFactory(model="echo-1")  # a transactional test may run after a flush of the seeded price
    call(client, key, hello())
    with django_assert_num_queries(GATEWAY_CALL_QUERIES):
        response = call(client, key, hello())
    assert response.status_code == 200


def test_a_provider_failure_is_502_in_openai_shape_and_charges_nothing(client, settings, user, key):
    settings.LLM_PROVIDER = "openai"
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    settings.LLM_TIMEOUT_SECONDS = 2
    before = Wallet.objects.get(user=user).balance
    response = call(client, key, hello())
    assert response.status_code == 502
    assert (
        response.json()["error"]["code"] == "provider_error"
        and response.json()["error"]["type"] == "api_error"
    )
    event = LLMCallEvent.objects.get()
    assert event.status == "error" and event.cost == 0 and event.purpose == "api"
    assert Wallet.objects.get(user=user).balance == before
    assert not CreditHold.objects.filter(status="held").exists()
    assert SpendLimit.objects.get(kind="key").held == 0


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse")  # the test client reads it synchronously
@pytest.mark.parametrize("accept", ["text/event-stream", "text/html", "application/xml"])
def test_any_accept_header_is_served_as_openai_serves_it(client, key, accept):
    streamed = call(client, key, hello(stream=True), HTTP_ACCEPT=accept)
    assert streamed.status_code == 200 and streamed["Content-Type"].startswith("text/event-stream")
    close_unread(streamed)
    refused = call(client, key, {**hello(stream=True), "model": "nope"}, HTTP_ACCEPT=accept)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"
    assert (
        client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {key['key']}", HTTP_ACCEPT=accept).status_code
        == 200
    )


def test_a_charge_that_fails_gives_the_hold_back_at_once(client, user, key, monkeypatch):
    from billing import services

    def broken(**kwargs):
        raise RuntimeError("the charge failed")

    monkeypatch.setattr(services, "charge", broken)
    client.raise_request_exception = False
    before = Wallet.objects.get(user=user).balance
    response = call(client, key, hello())
    assert response.status_code == 500
    hold = CreditHold.objects.get()
    assert hold.status == "released"  # was left held (blocking the key's limit and the caps) until it expired
    assert Wallet.objects.get(user=user).held == 0 and SpendLimit.objects.get(kind="key").held == 0
    assert Wallet.objects.get(user=user).balance == before


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse")  # the test client reads it synchronously
def test_a_streams_progress_is_on_its_hold_before_the_response_starts(client, key):
    body = hello(stream=True)
    response = call(client, key, body)
    assert response.status_code == 200

    hold = CreditHold.objects.get()  # nothing of the body read yet
    prompt = estimate_prompt_tokens(body["messages"], None)
    assert (hold.status, hold.progress_input_tokens, hold.progress_output_tokens) == ("held", prompt, 0)
    b"".join(response)
    assert CreditHold.objects.get().status == "settled"


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse")  # the test client reads it synchronously
def test_a_stream_closed_before_its_body_was_read_gives_its_hold_back_to_wallet_and_key(client, user, key):
    before = Wallet.objects.get(user=user)
    response = call(client, key, hello(stream=True))
    assert response.status_code == 200

    close_unread(response)  # the client left before the first byte

    assert CreditHold.objects.get().status == "released"
    wallet = Wallet.objects.get(user=user)
    assert (wallet.balance, wallet.held) == (before.balance, 0)
    assert SpendLimit.objects.get(pk=CreditHold.objects.get().spend_limit_id).spent == 0
    assert not LLMCallEvent.objects.exists()
    assert check_ledger().ok


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_whose_worst_case_cannot_be_held_is_400_in_openais_shape(client, user, key, settings, stream):
    # 10^12 output tokens at the largest price: a hold of 10^15 credits overflowed numeric(20,6), a 500.
    ModelPriceFactory(model="dear-1", input_price_per_1k=Decimal(10**6), output_price_per_1k=Decimal(10**6))
    settings.LLM_MAX_OUTPUT_TOKENS = 10**12

    response = call(client, key, hello(model="dear-1", max_tokens=10**12, stream=stream))

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "call_too_costly")
    assert "'dear-1'" in error["message"] and "max_tokens" in error["message"]
    assert not CreditHold.objects.exists() and not LLMCallEvent.objects.exists()
    assert SpendLimit.objects.get(kind="key").spent == 0
