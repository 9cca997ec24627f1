"""The gateway through a real server (uvicorn, as `make serve` runs) with the official openai client, sync and async."""

import asyncio
import os
import signal
import time
from decimal import Decimal

import openai
import pytest
from django.utils import timezone

from accounts.keys import create_api_key, revoke_api_key
from billing.models import CreditHold, CreditTransaction, LLMCallEvent, ModelPrice, SpendLimit, Wallet
from billing.reconcile import check_ledger
from billing.services import release_expired_holds
from tests.factories import UserFactory, fund
from tests.live_server import HOST, uvicorn_process, uvicorn_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    env = {
        "SECRET_KEY": "gateway-test-not-a-secret",
        "DATABASE_POOL_MAX_SIZE": "4",
        "LLM_PROVIDER": "echo",
        "LLM_ECHO_STREAM_DELAY_SECONDS": "0.02",
        "CREDIT_ENFORCEMENT_ENABLED": "true",
        "THROTTLE_GATEWAY_RATE": "10000/minute",
    }
    with uvicorn_server(env=env, log_dir=tmp_path_factory.mktemp("uvicorn")) as port:
        yield f"http://{HOST}:{port}/v1"


@pytest.fixture
def account():
    ModelPrice.objects.get_or_create(
        model="echo-1", defaults={"input_price_per_1k": Decimal("0.5"), "output_price_per_1k": Decimal("1.5")}
    )
    user = UserFactory()
    fund(user)
    key, secret = create_api_key(user=user, name="test")
    return user, key, secret


def client(server, secret, **kwargs):
    return openai.OpenAI(base_url=server, api_key=secret, max_retries=0, timeout=20, **kwargs)


def balance(user) -> Decimal:
    return Wallet.objects.get(user=user).balance


def test_a_plain_call_costs_what_its_usage_says(server, account):
    user, _, secret = account
    before = balance(user)
    raw = client(server, secret).chat.completions.with_raw_response.create(
        model="echo-1", messages=[{"role": "user", "content": "Hello"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Echo: Hello"
    cost = Decimal(completion.usage.model_extra["cost"])
    assert cost > 0 and before - balance(user) == cost
    assert raw.headers["X-Creditdesk-Cost"] == completion.usage.model_extra["cost"]
    assert CreditTransaction.objects.get(wallet__user=user, kind="debit").amount == -cost
    assert check_ledger().ok


def test_a_stream_ends_with_the_cost_of_its_debit(server, account):
    user, _, secret = account
    chunks = list(
        client(server, secret).chat.completions.create(
            model="echo-1", messages=[{"role": "user", "content": "Stream me a reply"}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: Stream me a reply"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    cost = Decimal(last.usage.model_extra["cost"])
    debit = CreditTransaction.objects.get(wallet__user=user, kind="debit")
    assert debit.amount == -cost and LLMCallEvent.objects.get(user=user).purpose == "api"
    assert not CreditHold.objects.filter(status="held").exists()


def test_a_tool_call_is_passed_through_and_answered(server, account):
    _, _, secret = account
    api = client(server, secret)
    messages = [{"role": "user", "content": 'call get_weather {"city": "Paris"}'}]
    first = api.chat.completions.create(model="echo-1", messages=messages, tools=TOOLS)
    (tool_call,) = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls"
    assert tool_call.function.name == "get_weather" and '"Paris"' in tool_call.function.arguments
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": tool_call.id, "content": "sunny, 21C"},
    ]
    second = api.chat.completions.create(model="echo-1", messages=messages, tools=TOOLS)
    assert "sunny, 21C" in second.choices[0].message.content


def test_refusals_raise_the_clients_typed_errors(server, account):
    user, key, secret = account
    api = client(server, secret)
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="nope-9", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as bad:
        api.chat.completions.create(model="echo-1", messages=[{"role": "robot", "content": "x"}])
    assert bad.value.body["param"] == "messages[0].role"

    broke = UserFactory()  # enforcement is on in this server: an empty wallet is refused
    _, broke_secret = create_api_key(user=broke, name="empty")
    with pytest.raises(openai.APIStatusError) as refused:
        client(server, broke_secret).chat.completions.create(
            model="echo-1", messages=[{"role": "user", "content": "x"}]
        )
    assert refused.value.status_code == 402 and refused.value.body["metadata"]["limit_source"] == "wallet"

    limited, limited_secret = create_api_key(user=user, name="tiny", limit=Decimal("0.000001"))
    client(server, limited_secret).chat.completions.create(
        model="echo-1", messages=[{"role": "user", "content": "x"}]
    )
    with pytest.raises(openai.APIStatusError) as spent:
        client(server, limited_secret).chat.completions.create(
            model="echo-1", messages=[{"role": "user", "content": "x"}]
        )
    assert spent.value.status_code == 402 and spent.value.body["metadata"]["limit_source"] == "key_limit"

    revoke_api_key(key=key)
    with pytest.raises(openai.AuthenticationError):
        api.models.list()


def test_a_client_that_closes_the_stream_halfway_is_charged_for_what_it_got(server, account):
    user, _, secret = account
    content = "A long question. " * 40
    stream = client(server, secret).chat.completions.create(
        model="echo-1", messages=[{"role": "user", "content": content}], stream=True
    )
    got = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            got.append(chunk.choices[0].delta.content)
        if len(got) == 10:
            break
    stream.close()
    deadline = time.monotonic() + 10
    while (
        CreditHold.objects.filter(wallet__user=user, status="held").exists() and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert not CreditHold.objects.filter(wallet__user=user, status="held").exists()
    event = LLMCallEvent.objects.get(user=user)
    assert 0 < event.output_tokens < len(f"Echo: {content}") // 4
    debit = CreditTransaction.objects.get(wallet__user=user, kind="debit")
    assert debit.amount == -event.cost and event.cost > 0
    assert check_ledger().ok


def test_the_async_client_plain_and_streamed(server, account):
    user, _, secret = account

    async def run():
        api = openai.AsyncOpenAI(base_url=server, api_key=secret, max_retries=0, timeout=20)
        plain = await api.chat.completions.create(
            model="echo-1", messages=[{"role": "user", "content": "one"}]
        )
        stream = await api.chat.completions.create(
            model="echo-1", messages=[{"role": "user", "content": "two"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
        await api.close()
        return plain, chunks

    plain, chunks = asyncio.run(run())
    costs = Decimal(plain.usage.model_extra["cost"]) + Decimal(chunks[-1].usage.model_extra["cost"])
    assert Decimal("10") - balance(user) == costs
    assert check_ledger().ok


def test_a_worker_killed_mid_stream_is_charged_at_expiry_from_its_progress(account, tmp_path):
    """SIGKILL mid-stream: the expiry job charges the hold with its last progress, on the key's limit too."""
    user, key, secret = account
    env = {
        "SECRET_KEY": "gateway-test-not-a-secret",
        "DATABASE_POOL_MAX_SIZE": "2",
        "LLM_PROVIDER": "echo",
        "LLM_ECHO_STREAM_DELAY_SECONDS": "0.1",
        "CREDIT_HOLD_TTL_SECONDS": "2",
        "STREAM_PROGRESS_INTERVAL_SECONDS": "0.2",
    }
    content = "A long question about everything. " * 30
    with uvicorn_process(env=env, log_dir=tmp_path) as (process, port):
        stream = client(f"http://{HOST}:{port}/v1", secret).chat.completions.create(
            model="echo-1", messages=[{"role": "user", "content": content}], stream=True
        )
        pieces = 0
        for chunk in stream:
            pieces += bool(chunk.choices and chunk.choices[0].delta.content)
            if pieces == 10:
                break
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)

    hold = CreditHold.objects.get(wallet__user=user)
    assert (
        hold.status == "held" and hold.progress_at is not None and hold.spend_limit_id == key.spend_limit_id
    )
    while timezone.now() <= hold.expires_at:
        time.sleep(0.1)
    assert release_expired_holds() == 1
    event = LLMCallEvent.objects.get(user=user)
    assert event.purpose == "api" and event.spend_limit_id == key.spend_limit_id
    assert 0 < event.cost <= hold.amount
    limit = SpendLimit.objects.get(pk=key.spend_limit_id)
    assert (limit.held, limit.spent) == (0, event.cost)
    assert check_ledger().ok
