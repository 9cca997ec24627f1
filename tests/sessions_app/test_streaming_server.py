"""Streamed turns through a real ASGI server: uvicorn on loopback, against the test database.

The server is a subprocess (its own event loop, threads and connections, as deployed) whose
provider is the OpenAI client talking to bench/fake_openai.py streaming slowly; the tests commit
their rows (transaction=True) so the server sees them, and read what it wrote back. The dead-worker
test starts a server of its own (the echo model streaming slowly) and SIGKILLs it mid-stream.
"""

import http.client
import json
import os
import signal
import socket
import time
from decimal import Decimal

import pytest
from django.utils import timezone

from bench.fake_openai import FakeOpenAIServer
from billing.models import CreditHold, CreditTransaction, LLMCallEvent, ModelPrice, Wallet
from billing.reconcile import check_ledger
from billing.services import compute_cost, release_expired_holds
from sessions_app.models import Message, Turn
from sessions_app.providers import count_tokens, estimate_prompt_tokens
from sessions_app.tools import tool_specs
from tests.factories import ChatSessionFactory, UserFactory, api_token, fund
from tests.live_server import HOST, uvicorn_process, uvicorn_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DRIP = 0.05  # seconds between the fake model's 4-token pieces
LONG = "Tell me everything about the history of the Mediterranean, in detail. " * 6


@pytest.fixture(scope="module")
def fake_model():
    server = FakeOpenAIServer(stall_seconds=2.0, stream_delay=DRIP).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(django_db_setup, fake_model, tmp_path_factory):
    """uvicorn serving config.asgi on a free loopback port, on the test database."""
    env = {
        "SECRET_KEY": "streaming-test-not-a-secret",
        "DATABASE_POOL_MAX_SIZE": "2",  # a small pool: streams must not each keep a connection
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": fake_model.base_url,
        "LLM_TIMEOUT_SECONDS": "5",
        "LLM_MAX_OUTPUT_TOKENS": "256",
    }
    with uvicorn_server(env=env, log_dir=tmp_path_factory.mktemp("uvicorn")) as port:
        yield port


@pytest.fixture
def account():
    """A user with credits, a token and a session (committed, so the server sees them)."""
    ModelPrice.objects.get_or_create(
        model="echo-1", defaults={"input_price_per_1k": Decimal("0.5"), "output_price_per_1k": Decimal("1.5")}
    )
    user = UserFactory()
    fund(user)
    session = ChatSessionFactory(owner=user, model="echo-1")
    return user, api_token(user), session


def open_stream(port, token, session_id, content):
    conn = http.client.HTTPConnection(HOST, port, timeout=15)
    body = json.dumps({"content": content})
    headers = {
        "Authorization": f"Token {token}",
        "Accept": "text/event-stream",
        "Content-Type": "application/json",
    }
    conn.request("POST", f"/api/v1/sessions/{session_id}/turns/", body=body, headers=headers)
    return conn, conn.getresponse()


def events(response):
    """(event, data) pairs as the server sends them."""
    name = None
    while line := response.readline():
        line = line.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


def prompt_tokens(content: str) -> int:
    """A fresh session's first call by the counting rule: the user's message and the tools offered."""
    return estimate_prompt_tokens([{"role": "user", "content": content}], tool_specs())


def wait_closed(user, timeout=10.0) -> CreditHold:
    deadline = time.monotonic() + timeout
    while True:
        hold = CreditHold.objects.get(wallet__user=user)
        if hold.status != CreditHold.Status.HELD or time.monotonic() > deadline:
            return hold
        time.sleep(0.05)


def test_a_whole_stream_sends_deltas_then_done_with_the_turn_and_bills_the_reported_usage(server, account):
    user, token, session = account
    content = "What is the capital of France?"
    conn, response = open_stream(server, token, session.pk, content)

    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream"
    received = list(events(response))
    conn.close()

    names = [name for name, _ in received]
    assert names[-1] == "done" and names.count("done") == 1 and set(names[:-1]) == {"delta"}
    assert len(names) > 2  # written in pieces, not in one go
    text = "".join(data["text"] for name, data in received if name == "delta")
    done = received[-1][1]
    assert text == done["assistant_message"]["content"] == f"Echo: {content}"
    assert set(done) == {
        "id",
        "session",
        "created_at",
        "user_message",
        "assistant_message",
        "usage",
        "tool_calls",
        "stop_reason",
        "balance_after",
        "low_balance",
    }
    price = ModelPrice.objects.get(model="echo-1")
    cost = compute_cost(price=price, input_tokens=count_tokens(content), output_tokens=count_tokens(text))
    assert done["usage"]["output_tokens"] == count_tokens(text)  # the fake's reported usage
    assert done["usage"]["cost"] == f"{cost:.6f}"
    assert done["balance_after"] == f"{Decimal('10') - cost:.6f}"
    assert Turn.objects.get().pk == done["id"]
    assert CreditHold.objects.get(wallet__user=user).status == CreditHold.Status.SETTLED
    assert Wallet.objects.get(user=user).held == 0
    assert check_ledger().ok


def test_a_client_that_hangs_up_mid_stream_is_charged_for_what_was_produced_and_leaves_no_hold(
    server, account
):
    user, token, session = account
    conn, response = open_stream(server, token, session.pk, LONG)
    got = []
    for _name, data in events(response):
        got.append(data["text"])
        if len(got) == 3:
            break
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()

    hold = wait_closed(user)
    assert hold.status == CreditHold.Status.SETTLED
    event = LLMCallEvent.objects.get(user=user)
    full_reply_tokens = count_tokens(f"Echo: {LONG}")
    # What the fake model had produced when the server stopped it, by the counting rule: at least
    # what we read, less than the whole reply; never $0, never more than the hold.
    assert count_tokens("".join(got)) <= event.output_tokens < full_reply_tokens
    assert event.input_tokens == prompt_tokens(LONG)
    assert 0 < event.cost <= hold.amount
    debit = CreditTransaction.objects.get(wallet__user=user, kind="debit")
    assert debit.amount == -event.cost and debit.llm_call_id == event.pk
    assert not Turn.objects.exists() and not Message.objects.exists()  # a partial reply is not kept
    assert Wallet.objects.get(user=user).held == 0
    assert check_ledger().ok


def test_a_provider_failing_mid_stream_after_text_sends_one_error_and_charges_what_was_produced(
    server, account
):
    user, token, session = account
    content = f"{LONG} [fault:midstream]"
    conn, response = open_stream(server, token, session.pk, content)

    assert response.status == 200
    received = list(events(response))
    conn.close()

    names = [name for name, _ in received]
    assert names[-1] == "error" and names.count("error") == 1 and "done" not in names
    assert "delta" in names  # it failed after writing
    assert received[-1][1] == {
        "detail": "The model provider failed before finishing its answer; only what it had produced was "
        "charged. Try again in a moment.",
        "code": "provider_error",
    }
    streamed = "".join(data["text"] for name, data in received if name == "delta")
    # The provider reported no usage: the prompt and what it wrote, by the counting rule, capped at the hold.
    event = LLMCallEvent.objects.get(user=user)
    hold = CreditHold.objects.get(wallet__user=user)
    assert event.status == "ok"
    assert (event.input_tokens, event.output_tokens) == (prompt_tokens(content), count_tokens(streamed))
    assert 0 < event.cost <= hold.amount
    assert (hold.status, hold.llm_call_id) == (CreditHold.Status.SETTLED, event.pk)
    debit = CreditTransaction.objects.get(wallet__user=user, kind="debit")
    assert debit.amount == -event.cost and debit.llm_call_id == event.pk
    wallet = Wallet.objects.get(user=user)
    assert (wallet.balance, wallet.held) == (Decimal("10") - event.cost, 0)
    assert not Turn.objects.exists() and not Message.objects.exists()
    assert check_ledger().ok


def test_a_gateway_stream_whose_model_fails_before_writing_is_a_plain_502_the_client_can_retry(
    server, account
):
    """API.md: refusals before any stream are plain answers, and only a failure after the first chunk
    is an error chunk; so a model that fails first is the 502 the OpenAI clients retry, not a 200."""
    import openai

    from accounts.keys import create_api_key

    user = account[0]
    key, secret = create_api_key(user=user, name="gateway")
    gateway = openai.OpenAI(base_url=f"http://{HOST}:{server}/v1", api_key=secret, max_retries=0, timeout=15)

    with pytest.raises(openai.InternalServerError) as raised:
        gateway.chat.completions.create(
            model="echo-1", messages=[{"role": "user", "content": "hello [fault:error]"}], stream=True
        )

    assert raised.value.status_code == 502
    assert raised.value.response.headers["content-type"] == "application/json"
    assert raised.value.body == {
        "message": "The model provider failed to answer; nothing was charged. Try again in a moment.",
        "type": "api_error",
        "code": "provider_error",
        "param": None,
    }
    event = LLMCallEvent.objects.get(user=user)
    assert (event.status, event.cost, event.spend_limit_id) == ("error", 0, key.spend_limit_id)
    hold = wait_closed(user)
    assert hold.status == CreditHold.Status.RELEASED
    assert not CreditTransaction.objects.filter(wallet__user=user, kind="debit").exists()
    assert Wallet.objects.filter(user=user).values_list("balance", "held").get() == (Decimal("10"), 0)
    # A stream that works still opens with the role chunk, then the text.
    chunks = list(
        gateway.chat.completions.create(
            model="echo-1", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[1].choices[0].delta.content
    assert check_ledger().ok


def test_enforcement_refuses_with_plain_402_json_before_any_stream(server):
    ModelPrice.objects.get_or_create(
        model="echo-1", defaults={"input_price_per_1k": Decimal("0.5"), "output_price_per_1k": Decimal("1.5")}
    )
    user = UserFactory()
    Wallet.objects.filter(user=user).update(enforcement=Wallet.Enforcement.ENFORCED)
    session = ChatSessionFactory(owner=user, model="echo-1")
    token = api_token(user)

    conn, response = open_stream(server, token, session.pk, "Hello?")
    raw = response.read()
    conn.close()

    assert response.status == 402
    assert response.getheader("Content-Type") == "application/json"
    assert json.loads(raw)["code"] == "insufficient_credits"
    assert not CreditHold.objects.exists()
    assert not LLMCallEvent.objects.exists()


def test_an_unknown_session_and_a_blank_message_are_plain_json_too(server, account):
    _, token, session = account
    conn, response = open_stream(server, token, 2**40, "Hello?")
    assert (response.status, response.getheader("Content-Type")) == (404, "application/json")
    response.read()
    conn.close()
    conn, response = open_stream(server, token, session.pk, "")
    assert (response.status, response.getheader("Content-Type")) == (400, "application/json")
    response.read()
    conn.close()
    assert not CreditHold.objects.exists()


def test_a_worker_killed_mid_stream_is_charged_at_expiry_with_its_last_progress(account, tmp_path):
    """SIGKILL (the OOM killer's way): nothing in the process runs, its hold is charged by the expiry job."""
    user, token, session = account
    env = {
        "SECRET_KEY": "streaming-test-not-a-secret",
        "DATABASE_POOL_MAX_SIZE": "2",
        "LLM_PROVIDER": "echo",
        "LLM_ECHO_STREAM_DELAY_SECONDS": "0.1",  # a long reply: ~80 pieces, ~8 s
        "CREDIT_HOLD_TTL_SECONDS": "2",
        "STREAM_PROGRESS_INTERVAL_SECONDS": "0.2",
    }
    content = LONG * 3
    with uvicorn_process(env=env, log_dir=tmp_path) as (process, port):
        conn, response = open_stream(port, token, session.pk, content)
        assert response.status == 200
        read = []
        for name, data in events(response):
            assert name == "delta"
            read.append(data["text"])
            if len(read) == 10:  # pieces come 0.1 s apart: progress past the open one was written
                break
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
        conn.close()

    hold = CreditHold.objects.get(wallet__user=user)
    assert hold.status == CreditHold.Status.HELD and hold.progress_at is not None  # nobody closed it
    assert not LLMCallEvent.objects.exists()
    while timezone.now() <= hold.expires_at:  # one TTL after its last progress
        time.sleep(0.1)
    hold.refresh_from_db()
    assert hold.status == CreditHold.Status.HELD  # and nothing wrote progress since: the writer is dead

    assert release_expired_holds() == 1

    hold.refresh_from_db()
    event = LLMCallEvent.objects.get(user=user)
    assert (hold.status, hold.llm_call_id) == (CreditHold.Status.SETTLED, event.pk)
    assert event.status == "ok" and event.purpose == "chat"
    assert event.input_tokens == prompt_tokens(content)
    assert 0 < event.output_tokens == hold.progress_output_tokens < count_tokens(f"Echo: {content}")
    assert 0 < event.cost <= hold.amount
    wallet = Wallet.objects.get(user=user)
    assert (wallet.balance, wallet.held) == (Decimal("10") - event.cost, 0)
    debit = CreditTransaction.objects.get(wallet__user=user, kind="debit")
    assert (debit.amount, debit.llm_call_id) == (-event.cost, event.pk)
    assert not Turn.objects.exists() and not Message.objects.exists()
    assert check_ledger().ok
