"""The openai provider against a fake OpenAI-compatible server on loopback: success and each failure."""

import asyncio
import json
import threading
import time
from decimal import Decimal

import pytest
from django.test import override_settings
from werkzeug import Response

from billing.models import CreditTransaction, LLMCallEvent, ModelPrice, Wallet
from billing.services import compute_cost
from sessions_app.models import Message, Turn
from sessions_app.providers import Delta, ProviderError, ToolCalls, Usage
from sessions_app.providers.openai import OpenAIProvider
from tests.factories import ChatSessionFactory, fund

pytestmark = pytest.mark.django_db

COMPLETIONS = "/v1/chat/completions"
SECRET = "sk-test-secret-key-never-shown"


def completion(text="Hello from the fake model.", prompt_tokens=120, completion_tokens=30, **extra):
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "echo-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": 150,
        },
    }
    body.update(extra)
    return body


@pytest.fixture
def openai_settings(httpserver):
    with override_settings(
        LLM_PROVIDER="openai",
        LLM_BASE_URL=httpserver.url_for("/v1"),
        LLM_API_KEY=SECRET,
        LLM_TIMEOUT_SECONDS=0.5,
        LLM_MAX_OUTPUT_TOKENS=256,
    ):
        yield httpserver


@pytest.fixture
def session(user):
    fund(user)
    return ChatSessionFactory(owner=user)


def take(client, session, content="What is the capital of France?"):
    return client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": content}, format="json")


def assert_failed_and_not_charged(user, response):
    assert SECRET not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    event = LLMCallEvent.objects.get(user=user)
    assert (event.status, event.cost, event.provider, event.model) == ("error", 0, "openai", "echo-1")
    assert event.error
    assert SECRET not in event.error
    assert not CreditTransaction.objects.filter(wallet__user=user, kind="debit").exists()
    assert Wallet.objects.get(user=user).balance == Decimal("10")
    assert not Message.objects.exists()
    assert not Turn.objects.exists()
    return event


def test_success_bills_the_usage_the_provider_reports(openai_settings, user_client, user, session):
    openai_settings.expect_request(COMPLETIONS, method="POST").respond_with_json(completion())

    response = take(user_client, session)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["assistant_message"] == {"role": "assistant", "content": "Hello from the fake model."}
    price = ModelPrice.objects.get(model="echo-1")
    cost = compute_cost(price=price, input_tokens=120, output_tokens=30)
    event = LLMCallEvent.objects.get(user=user)
    assert body["usage"] == {
        "model": "echo-1",
        "input_tokens": 120,
        "output_tokens": 30,
        "cost": f"{cost:.6f}",
        "calls": [
            {
                "id": event.pk,
                "purpose": "chat",
                "model": "echo-1",
                "input_tokens": 120,
                "output_tokens": 30,
                "cost": f"{cost:.6f}",
                "used_fallback": False,
            }
        ],
    }
    assert body["tool_calls"] == []
    assert body["balance_after"] == f"{Decimal('10') - cost:.6f}"
    event = LLMCallEvent.objects.get(user=user)
    assert (event.status, event.provider, event.input_tokens, event.output_tokens) == (
        "ok",
        "openai",
        120,
        30,
    )
    [(request, _)] = openai_settings.log
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    sent = request.get_json()
    assert sent["model"] == "echo-1"
    assert sent["max_tokens"] == 256
    assert sent["messages"] == [{"role": "user", "content": "What is the capital of France?"}]


def test_a_nul_or_lone_surrogate_in_the_answer_is_stored_as_a_replacement(
    openai_settings, user_client, session
):
    # PostgreSQL cannot store either: the turn failed with a 500 after the call was made.
    openai_settings.expect_request(COMPLETIONS, method="POST").respond_with_json(
        completion(text="a\x00b\ud800c")
    )
    response = take(user_client, session)
    assert response.status_code == 201, response.content
    assert response.json()["assistant_message"]["content"] == "a\ufffdb\ufffdc"
    assert Message.objects.get(role="assistant").content == "a\ufffdb\ufffdc"


def test_second_turn_sends_the_history(openai_settings, user_client, session):
    openai_settings.expect_request(COMPLETIONS, method="POST").respond_with_json(completion(text="Paris."))
    take(user_client, session, "Capital of France?")
    take(user_client, session, "And of Italy?")

    sent = openai_settings.log[-1][0].get_json()["messages"]

    assert sent == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    ]


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_is_502(openai_settings, user_client, user, session, status):
    openai_settings.expect_request(COMPLETIONS).respond_with_json(
        {"error": {"message": f"boom, key {SECRET}", "type": "server_error"}}, status=status
    )

    response = take(user_client, session)

    assert response.status_code == 502
    assert response.json() == {
        "detail": "The model provider failed to answer; nothing was charged. Try again in a moment.",
        "code": "provider_error",
    }
    event = assert_failed_and_not_charged(user, response)
    assert str(status) in event.error
    assert len(openai_settings.log) == 1  # never retried: a retried paid call could bill twice


def test_a_client_error_from_the_provider_is_502_too(openai_settings, user_client, user, session):
    openai_settings.expect_request(COMPLETIONS).respond_with_json(
        {"error": {"message": "bad key"}}, status=401
    )

    response = take(user_client, session)

    assert response.status_code == 502
    assert_failed_and_not_charged(user, response)


def test_a_timeout_is_504(openai_settings, user_client, user, session):
    release = threading.Event()

    def slow(request):
        # Hold the answer past LLM_TIMEOUT_SECONDS, then free the (single-threaded) fake server.
        release.wait(5)
        return Response(json.dumps(completion()), content_type="application/json")

    openai_settings.expect_request(COMPLETIONS).respond_with_handler(slow)

    started = time.monotonic()
    try:
        response = take(user_client, session)
    finally:
        release.set()

    assert time.monotonic() - started < 3
    assert response.status_code == 504
    assert response.json() == {
        "detail": "The model provider did not answer in time; nothing was charged. Try again in a moment.",
        "code": "provider_timeout",
    }
    event = assert_failed_and_not_charged(user, response)
    assert "Timeout" in event.error
    assert event.latency_ms >= 400


def test_an_unreachable_provider_is_502(user_client, user, session):
    import socket

    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with override_settings(
        LLM_PROVIDER="openai", LLM_BASE_URL=f"http://127.0.0.1:{port}/v1", LLM_API_KEY=SECRET
    ):
        response = take(user_client, session)

    assert response.status_code == 502
    assert_failed_and_not_charged(user, response)


@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(
            lambda h: h.respond_with_data("this is not json", content_type="application/json"), id="bad-json"
        ),
        pytest.param(
            lambda h: h.respond_with_data("<html>gateway</html>", content_type="text/html"), id="html"
        ),
        pytest.param(lambda h: h.respond_with_json({"hello": "world"}), id="no-choices"),
        pytest.param(lambda h: h.respond_with_json(completion(choices=[])), id="empty-choices"),
        pytest.param(lambda h: h.respond_with_json(completion(usage=None)), id="no-usage"),
        pytest.param(lambda h: h.respond_with_json(completion(prompt_tokens=-5)), id="negative-usage"),
        pytest.param(lambda h: h.respond_with_json(completion(prompt_tokens="many")), id="string-usage"),
        pytest.param(
            lambda h: h.respond_with_json(
                completion(choices=[{"index": 0, "message": {"role": "assistant", "content": None}}])
            ),
            id="null-content",
        ),
        pytest.param(lambda h: h.respond_with_json([1, 2, 3]), id="a-list"),
    ],
)
def test_a_malformed_response_is_502(openai_settings, user_client, user, session, respond):
    respond(openai_settings.expect_request(COMPLETIONS))

    response = take(user_client, session)

    assert response.status_code == 502
    assert response.json()["code"] == "provider_error"
    event = assert_failed_and_not_charged(user, response)
    assert "response" in event.error


def test_enforcement_refusal_never_calls_the_provider(openai_settings, api_client):
    broke = ChatSessionFactory()  # its owner's wallet is empty
    api_client.force_authenticate(broke.owner)
    openai_settings.expect_request(COMPLETIONS).respond_with_json(completion())

    with override_settings(CREDIT_ENFORCEMENT_ENABLED=True):
        response = take(api_client, broke)

    assert response.status_code == 402
    assert openai_settings.log == []


def test_an_empty_base_url_means_the_clients_default_endpoint(monkeypatch):
    from sessions_app.providers.openai import _openai_client

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    _openai_client.cache_clear()

    client = _openai_client("", "", 5.0)

    assert str(client.base_url).startswith("https://api.openai.com/")
    assert client.max_retries == 0


def sse_body(*chunks) -> str:
    """A streamed answer as the API sends it: one `data:` line a chunk (a str is sent as it is), then [DONE]."""
    lines = [f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n" for c in chunks]
    return "".join(lines) + "data: [DONE]\n\n"


def chunk(**delta):
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}


USAGE_CHUNK = {"id": "c", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7}}


def streamed(httpserver, body: str, status: int = 200) -> list:
    """What OpenAIProvider.stream yields for `body` (or the ProviderError it raises), and the request it sent."""
    httpserver.expect_request(COMPLETIONS, method="POST").respond_with_response(
        Response(body, status=status, content_type="text/event-stream")
    )

    async def run():
        items = []
        try:
            async for item in OpenAIProvider().stream(
                model="echo-1",
                messages=[{"role": "user", "content": "hi"}],
                max_output_tokens=64,
                options={"temperature": 0.5},
            ):
                items.append(item)
        except ProviderError as exc:
            items.append(exc)
        return items

    return asyncio.run(run())


def test_a_stream_yields_its_deltas_its_tool_calls_whole_and_then_its_usage(openai_settings):
    body = sse_body(
        chunk(role="assistant", content=""),
        chunk(content="Hel"),
        chunk(content="lo"),
        chunk(tool_calls=[{"index": 0, "id": "call_1", "function": {"name": "clock", "arguments": '{"a"'}}]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": ": 1}"}}]),
        USAGE_CHUNK,
    )

    items = streamed(openai_settings, body)

    assert items[:2] == [Delta("Hel"), Delta("lo")]
    assert isinstance(items[2], ToolCalls) and len(items[2].calls) == 1
    assert (items[2].calls[0].id, items[2].calls[0].name, items[2].calls[0].arguments) == (
        "call_1",
        "clock",
        '{"a": 1}',
    )
    assert items[3] == Usage(input_tokens=11, output_tokens=7)
    sent = openai_settings.log[-1][0].get_json()
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert (sent["model"], sent["max_tokens"], sent["temperature"]) == ("echo-1", 64, 0.5)
    assert openai_settings.log[-1][0].headers["Authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (sse_body(chunk(content="Hi")), 200, "ProviderBadResponse"),  # no usage: nothing to bill by
        (sse_body(chunk(content="Hi"), {"error": {"message": "overloaded"}}), 200, "ProviderBadResponse"),
        (sse_body(chunk(content="Hi"), "42", USAGE_CHUNK), 200, "ProviderBadResponse"),
        (sse_body(chunk(content="Hi"), "{not json", USAGE_CHUNK), 200, "ProviderBadResponse"),
        (sse_body(chunk(tool_calls=[{"id": "x"}]), USAGE_CHUNK), 200, "ProviderBadResponse"),
        ('{"error": {"message": "down"}}', 503, "ProviderUnavailable"),
    ],
    ids=["no-usage", "error-chunk", "not-an-object", "not-json", "tool-piece-without-index", "http-503"],
)
def test_a_broken_stream_is_a_provider_error_after_what_it_delivered(openai_settings, body, status, error):
    items = streamed(openai_settings, body, status=status)

    assert type(items[-1]).__name__ == error
    assert all(isinstance(item, Delta) for item in items[:-1])
