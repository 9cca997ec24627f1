"""A streamed call records its progress on its hold, and a provider failing mid-answer is charged what it produced.

Through the test client with a scripted streaming model (tests/sessions_app/test_streaming_server.py
and test_streaming_dead_worker.py go through a real server).
"""

import json
from decimal import Decimal

import pytest
from django.db import OperationalError

from billing import services as billing_services
from billing.models import CreditHold, CreditTransaction, LLMCallEvent, Wallet
from billing.reconcile import check_ledger
from sessions_app.models import Message, Turn
from sessions_app.providers import (
    Delta,
    EchoProvider,
    ProviderUnavailable,
    Usage,
    count_tokens,
    estimate_prompt_tokens,
)
from sessions_app.tools import tool_specs
from tests.factories import ChatSessionFactory, ModelPriceFactory, StaffUserFactory, close_unread

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore:StreamingHttpResponse")]

CONTENT = "Tell me about the sea."
PIECES = ["The sea ", "is wide, ", "and deep, ", "and old."]


class Scripted(EchoProvider):
    """A model whose stream is the given items, in order; an exception among them is raised there."""

    def __init__(self, *items):
        self.items = items

    async def stream(self, *, model, messages, max_output_tokens, tools=None):
        for item in self.items:
            if isinstance(item, Exception):
                raise item
            yield item


@pytest.fixture
def account(user):
    ModelPriceFactory(model="echo-1", input_price_per_1k=Decimal("1"), output_price_per_1k=Decimal("2"))
    billing_services.grant(
        user=user, amount=Decimal("10"), reason="test funds", initiated_by=StaffUserFactory()
    )
    return user, ChatSessionFactory(owner=user, model="echo-1")


@pytest.fixture
def progress_writes(monkeypatch):
    """Every progress written, as (input_tokens, output_tokens), the real write still made."""
    writes: list[tuple[int, int]] = []
    record = billing_services.record_progress

    def spy(**kwargs):
        writes.append((kwargs["input_tokens"], kwargs["output_tokens"]))
        return record(**kwargs)

    monkeypatch.setattr(billing_services, "record_progress", spy)
    return writes


def opened(client, session, monkeypatch, model: Scripted):
    """A streamed turn answered by `model`: its response, the body not read yet."""
    monkeypatch.setattr("sessions_app.services.get_provider", lambda: model)
    response = client.post(
        f"/api/v1/sessions/{session.pk}/turns/",
        {"content": CONTENT},
        format="json",
        HTTP_ACCEPT="text/event-stream",
    )
    assert response.status_code == 200
    return response


def stream(client, session, monkeypatch, *items) -> list[tuple[str, dict]]:
    response = opened(client, session, monkeypatch, Scripted(*items))
    blocks = [block.split("\n", 1) for block in b"".join(response).decode().strip().split("\n\n")]
    return [(name.removeprefix("event: "), json.loads(data.removeprefix("data: "))) for name, data in blocks]


def prompt_tokens() -> int:
    return estimate_prompt_tokens([{"role": "user", "content": CONTENT}], tool_specs())


def test_progress_is_written_when_the_stream_opens_and_when_the_usage_arrives_not_per_delta(
    user_client, account, monkeypatch, progress_writes, settings
):
    settings.STREAM_PROGRESS_INTERVAL_SECONDS = 3600
    _, session = account

    events = stream(user_client, session, monkeypatch, *map(Delta, PIECES), Usage(30, 12))

    assert [name for name, _ in events] == ["delta"] * 4 + ["done"]
    assert progress_writes == [(prompt_tokens(), 0), (30, 12)]
    hold = CreditHold.objects.get()
    assert (hold.status, hold.progress_input_tokens, hold.progress_output_tokens) == ("settled", 30, 12)
    assert hold.progress_price.model == "echo-1" and hold.progress_purpose == "chat"


def test_past_the_interval_a_delta_writes_the_output_so_far_by_the_counting_rule(
    user_client, account, monkeypatch, progress_writes, settings
):
    settings.STREAM_PROGRESS_INTERVAL_SECONDS = 0  # every delta is past it
    _, session = account

    stream(user_client, session, monkeypatch, *map(Delta, PIECES), Usage(30, 12))

    so_far = [count_tokens("".join(PIECES[: n + 1])) for n in range(len(PIECES))]
    assert progress_writes == [(prompt_tokens(), 0), *((prompt_tokens(), n) for n in so_far), (30, 12)]


def test_a_provider_failing_after_text_without_usage_charges_the_prompt_and_the_text(
    user_client, user, account, monkeypatch
):
    _, session = account

    events = stream(user_client, session, monkeypatch, *map(Delta, PIECES[:2]), ProviderUnavailable("cut"))

    assert [name for name, _ in events] == ["delta", "delta", "error"]
    assert events[-1][1]["code"] == "provider_error"
    assert "only what it had produced was charged" in events[-1][1]["detail"]
    event, hold = LLMCallEvent.objects.get(), CreditHold.objects.get()
    assert event.status == "ok"
    assert (event.input_tokens, event.output_tokens) == (prompt_tokens(), count_tokens("".join(PIECES[:2])))
    assert 0 < event.cost <= hold.amount
    assert (hold.status, hold.llm_call_id) == ("settled", event.pk)
    assert CreditTransaction.objects.get(kind="debit").amount == -event.cost
    wallet = Wallet.objects.get(user=user)
    assert (wallet.balance, wallet.held) == (Decimal("10") - event.cost, 0)
    assert not Turn.objects.exists() and not Message.objects.exists()
    assert check_ledger().ok


def test_a_provider_failing_before_any_text_is_a_failed_call_that_costs_nothing(
    user_client, user, account, monkeypatch
):
    _, session = account

    events = stream(user_client, session, monkeypatch, ProviderUnavailable("refused"))

    assert events == [
        (
            "error",
            {
                "detail": "The model provider failed to answer; nothing was charged. Try again in a moment.",
                "code": "provider_error",
            },
        )
    ]
    event = LLMCallEvent.objects.get()
    assert (event.status, event.cost) == ("error", 0)
    assert CreditHold.objects.get().status == "released"
    assert not CreditTransaction.objects.filter(kind="debit").exists()
    assert Wallet.objects.get(user=user).held == 0
    assert check_ledger().ok


def test_usage_reported_above_the_hold_before_a_failure_is_charged_exactly_the_hold(
    user_client, user, account, monkeypatch
):
    _, session = account

    events = stream(
        user_client,
        session,
        monkeypatch,
        Delta("Hi"),
        Usage(10**6, 10),
        ProviderUnavailable("cut after usage"),
    )

    assert events[-1][0] == "error"
    event, hold = LLMCallEvent.objects.get(), CreditHold.objects.get()
    assert (event.input_tokens, event.output_tokens) == (10**6, 10)  # recorded as reported
    assert event.cost == hold.amount  # 1000 credits at the price: capped at what was held
    assert CreditTransaction.objects.get(kind="debit").amount == -hold.amount
    assert Wallet.objects.get(user=user).balance == Decimal("10") - hold.amount
    assert check_ledger().ok


def test_the_first_calls_progress_is_on_its_hold_before_the_response_starts(
    user_client, account, monkeypatch, progress_writes
):
    _, session = account

    response = opened(user_client, session, monkeypatch, Scripted(Delta("Hi"), Usage(30, 12)))

    # Nothing of the body read yet: a process that died now would be charged the prompt at expiry.
    hold = CreditHold.objects.get()
    assert (hold.status, hold.progress_input_tokens, hold.progress_output_tokens) == (
        "held",
        prompt_tokens(),
        0,
    )
    assert hold.progress_at is not None
    b"".join(response)
    assert progress_writes == [(prompt_tokens(), 0), (30, 12)]
    assert CreditHold.objects.get().status == "settled"


def test_a_stream_closed_before_its_body_was_read_gives_its_hold_back_and_charges_nothing(
    user_client, user, account, monkeypatch
):
    _, session = account
    asked = []

    class Watched(Scripted):
        async def stream(self, **kwargs):
            asked.append(kwargs["model"])
            async for item in super().stream(**kwargs):
                yield item

    balance = Wallet.objects.get(user=user).balance

    response = opened(user_client, session, monkeypatch, Watched(Delta("Hi"), Usage(30, 12)))
    close_unread(response)  # the client left before the first byte

    assert asked == []
    assert CreditHold.objects.get().status == "released"
    wallet = Wallet.objects.get(user=user)
    assert (wallet.balance, wallet.held) == (balance, 0)
    assert not LLMCallEvent.objects.exists() and not Turn.objects.exists()
    assert check_ledger().ok


def test_a_failure_giving_an_unread_streams_hold_back_is_logged_not_raised_from_close(
    user_client, account, monkeypatch, caplog
):
    _, session = account
    response = opened(user_client, session, monkeypatch, Scripted(Delta("Hi"), Usage(30, 12)))

    def fail(**kwargs):
        raise OperationalError("the database went away")

    monkeypatch.setattr(billing_services, "release", fail)
    close_unread(response)

    assert "an unread stream's hold could not be given back" in caplog.text
    assert CreditHold.objects.get().status == "held"  # left to its expiry
