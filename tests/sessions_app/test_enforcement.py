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
