"""The credit enforcement gate on a turn: 402 with nothing written when on, debt allowed when off."""

import logging
from decimal import Decimal

import pytest
from django.test import override_settings

from billing.exceptions import INSUFFICIENT_CREDITS
from billing.models import CreditTransaction, LLMCallEvent, Wallet
from billing.services import grant
from sessions_app.models import Message, Turn
from tests.factories import ChatSessionFactory, StaffUserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(user):
    return ChatSessionFactory(owner=user)


def turn(client, session):
    return client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "please answer"}, format="json")


def ledger_rows(user):
    return CreditTransaction.objects.filter(wallet__user=user).count()


@override_settings(CREDIT_ENFORCEMENT_ENABLED=True)
def test_enabled_with_an_empty_wallet_refuses_with_402_and_writes_nothing(user_client, user, session, caplog):
    rows_before = ledger_rows(user)

    with caplog.at_level(logging.WARNING, logger="billing.services.holds"):
        response = turn(user_client, session)

    assert response.status_code == 402
    assert response.json() == {
        "detail": "Insufficient credits. Please top up your account.",
        "code": "insufficient_credits",
        "balance": "0.000000",
        "available": "0.000000",
    }
    assert not Message.objects.exists()
    assert not Turn.objects.exists()
    assert not LLMCallEvent.objects.exists()
    assert ledger_rows(user) == rows_before
    assert Wallet.objects.get(user=user).balance == 0
    [record] = [r for r in caplog.records if r.name == "billing.services.holds"]
    assert (record.user_id, record.balance) == (user.pk, "0.000000")


@override_settings(CREDIT_ENFORCEMENT_ENABLED=True)
def test_enabled_with_a_negative_balance_reports_it(user_client, user, session):
    with override_settings(CREDIT_ENFORCEMENT_ENABLED=False):
        turn(user_client, session)  # runs the wallet into debt
    balance = Wallet.objects.get(user=user).balance
    assert balance < 0

    response = turn(user_client, session)

    assert response.status_code == 402
    assert response.json()["balance"] == f"{balance:.6f}"
    assert response.json()["detail"] == INSUFFICIENT_CREDITS
    assert Turn.objects.count() == 1


@override_settings(CREDIT_ENFORCEMENT_ENABLED=True)
def test_enabled_with_credit_takes_the_turn(user_client, user, session):
    grant(user=user, amount=Decimal("2"), reason="top up", initiated_by=StaffUserFactory())

    response = turn(user_client, session)

    assert response.status_code == 201
    assert Decimal(response.json()["balance_after"]) < Decimal("2")


@override_settings(CREDIT_ENFORCEMENT_ENABLED=True)
def test_enabled_does_not_gate_reading_turns(user_client, session):
    assert user_client.get(f"/api/v1/sessions/{session.pk}/turns/").status_code == 200


@override_settings(CREDIT_ENFORCEMENT_ENABLED=False)
def test_disabled_with_an_empty_wallet_goes_into_debt_and_flags_it(user_client, user, session):
    response = turn(user_client, session)

    assert response.status_code == 201
    body = response.json()
    assert Decimal(body["balance_after"]) < 0
    assert body["low_balance"] is True
    debit = CreditTransaction.objects.get(wallet__user=user, kind="debit")
    assert debit.balance_after == Decimal(body["balance_after"]) == Wallet.objects.get(user=user).balance
    assert -debit.amount == Decimal(body["usage"]["cost"])


def test_disabled_is_the_default(user_client, session):
    assert turn(user_client, session).status_code == 201


def test_flipping_the_setting_between_requests_changes_the_outcome(user_client, user, session):
    with override_settings(CREDIT_ENFORCEMENT_ENABLED=True):
        assert turn(user_client, session).status_code == 402
    with override_settings(CREDIT_ENFORCEMENT_ENABLED=False):
        assert turn(user_client, session).status_code == 201
    with override_settings(CREDIT_ENFORCEMENT_ENABLED=True):
        assert turn(user_client, session).status_code == 402
    assert Turn.objects.count() == 1


@override_settings(CREDIT_ENFORCEMENT_ENABLED=True)
def test_another_users_session_is_404_before_the_credit_check(user_client):
    theirs = ChatSessionFactory()

    assert turn(user_client, theirs).status_code == 404


@override_settings(CREDIT_ENFORCEMENT_ENABLED=True)
def test_enabled_refusal_costs_few_queries(user_client, session, django_assert_max_num_queries):
    # session with price, wallet balance; nothing else.
    with django_assert_max_num_queries(2):
        assert turn(user_client, session).status_code == 402


class CountsATokenACharacter:
    """A provider whose tokenizer counts a token per CJK character, as real ones do: four times what
    the counting rule (4 characters a token) sized the hold on. Its first call asks for a tool."""

    name = "cjk"

    def __init__(self, *args, **kwargs):
        self.asked = 0

    def complete(self, *, model, messages, max_output_tokens, tools=None):
        from sessions_app.providers import Completion, ToolCallRequest

        self.asked += 1
        prompt = sum(len(message.get("content") or "") for message in messages)
        if tools and self.asked == 1:
            search = ToolCallRequest(id="c1", name="search", arguments='{"query": "world"}')
            return Completion(text="", input_tokens=prompt, output_tokens=2, tool_calls=(search,))
        return Completion(text="OK.", input_tokens=prompt, output_tokens=2, tool_calls=())


@override_settings(CREDIT_ENFORCEMENT_ENABLED=True)
@pytest.mark.parametrize(
    ("funds", "calls"),
    [("1", 1), ("100", 2)],  # one call on a thin wallet; a tool step and the answer on a funded one
)
def test_no_call_of_a_turn_is_charged_more_than_its_hold(
    user_client, user, session, monkeypatch, funds, calls
):
    """Under enforcement a turn overdraws by at most its holds, whatever the provider reports (a wallet
    of 1 credit went to -27 when the answer was charged its reported usage)."""
    from billing.models import CreditHold
    from tests.factories import fund

    monkeypatch.setattr("sessions_app.services.get_provider", CountsATokenACharacter)
    fund(user, funds)
    content = "你好世界" * 7000  # 28,000 characters: 7,000 tokens by the counting rule, 28,000 reported

    response = user_client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": content}, format="json")

    assert response.status_code == 201
    events = LLMCallEvent.objects.filter(user=user).order_by("id")
    holds = {hold.llm_call_id: hold.amount for hold in CreditHold.objects.filter(wallet__user=user)}
    assert len(events) == calls
    assert all(event.cost == holds[event.pk] for event in events)  # each capped at its hold
    assert all(event.input_tokens >= 28000 for event in events)  # the tokens as reported
    assert Wallet.objects.get(user=user).balance == Decimal(funds) - sum(holds.values())
    assert Decimal(response.json()["usage"]["cost"]) == sum(event.cost for event in events)
