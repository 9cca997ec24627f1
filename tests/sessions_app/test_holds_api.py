"""Holds on the real turn endpoint: overrides, shadow refusals, and the race that holds close."""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from billing import services
from billing.models import CreditHold, CreditTransaction, LLMCallEvent, ModelPrice, Wallet
from billing.reconcile import check_ledger
from sessions_app.providers import EchoProvider
from tests.factories import ChatSessionFactory, ModelPriceFactory, StaffUserFactory, UserFactory, api_token


def turn(client, session, content="please answer"):
    return client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": content}, format="json")


def set_enforcement(user, value):
    Wallet.objects.filter(user=user).update(enforcement=value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("enforcement", "setting", "status"),
    [
        ("default", False, 201),
        ("default", True, 402),
        ("exempt", False, 201),
        ("exempt", True, 201),
        ("enforced", False, 402),
        ("enforced", True, 402),
    ],
)
def test_each_override_against_each_setting_on_an_empty_wallet(
    user_client, user, enforcement, setting, status
):
    session = ChatSessionFactory(owner=user)
    set_enforcement(user, enforcement)
    with override_settings(CREDIT_ENFORCEMENT_ENABLED=setting):
        response = turn(user_client, session)
    assert response.status_code == status
    if status == 402:
        assert not LLMCallEvent.objects.exists()
        assert not CreditHold.objects.exists()
    assert not CreditHold.objects.filter(status="held").exists()
    assert check_ledger().ok


@pytest.mark.django_db
@override_settings(CREDIT_ENFORCEMENT_ENABLED=True)
def test_a_wallet_whose_balance_is_all_held_is_refused_with_available(user_client, user):
    session = ChatSessionFactory(owner=user)
    services.grant(user=user, amount="1", reason="x", initiated_by=StaffUserFactory())
    services.reserve(user=user, amount=Decimal("1"))  # a turn in flight holds everything

    response = turn(user_client, session)

    assert response.status_code == 402
    assert response.json()["balance"] == "1.000000"
    assert response.json()["available"] == "0.000000"


@pytest.mark.django_db
@override_settings(CREDIT_ENFORCEMENT_ENABLED=False, CREDIT_ENFORCEMENT_SHADOW=True)
def test_shadow_mode_serves_the_turn_and_flags_its_event(user_client, user):
    session = ChatSessionFactory(owner=user)
    assert turn(user_client, session).status_code == 201
    assert LLMCallEvent.objects.get().shadow_refusal is True
    services.grant(user=user, amount="100", reason="x", initiated_by=StaffUserFactory())
    assert turn(user_client, session).status_code == 201
    assert list(LLMCallEvent.objects.order_by("id").values_list("shadow_refusal", flat=True)) == [True, False]


@pytest.mark.django_db
def test_a_turn_settles_its_hold_and_leaves_nothing_held(user_client, user):
    session = ChatSessionFactory(owner=user)
    services.grant(user=user, amount="10", reason="x", initiated_by=StaffUserFactory())
    body = turn(user_client, session).json()
    hold = CreditHold.objects.get()
    assert hold.status == "settled"
    assert hold.llm_call_id == LLMCallEvent.objects.get().pk
    assert hold.amount > Decimal(body["usage"]["cost"])  # the estimate covers the output cap
    assert Wallet.objects.get(user=user).held == 0


# --- the race, on PostgreSQL through the real endpoint --------------------------------------

RACERS = 50


@pytest.fixture
def slow_echo(monkeypatch):
    """Keep each model call in flight for a while, so the 50 turns truly overlap."""
    original = EchoProvider.complete

    def complete(self, **kwargs):
        time.sleep(0.05)
        return original(self, **kwargs)

    monkeypatch.setattr(EchoProvider, "complete", complete)


def race(user, session) -> list[int]:
    key = api_token(user)
    barrier = threading.Barrier(RACERS)

    def one(n):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        try:
            barrier.wait()
            return turn(client, session, content=f"turn {n}").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        return list(pool.map(one, range(RACERS)))


def turn_costs() -> tuple[Decimal, Decimal]:
    """The cheapest and the dearest of the served turns (their prompts differ by a few characters)."""
    costs = LLMCallEvent.objects.filter(status="ok").values_list("cost", flat=True)
    return min(costs), max(costs)


@pytest.mark.django_db(transaction=True)
@override_settings(CREDIT_ENFORCEMENT_ENABLED=True)
def test_fifty_racing_turns_cannot_overdraw_an_enforced_wallet(slow_echo):
    if not ModelPrice.objects.filter(model="echo-1").exists():
        ModelPriceFactory(model="echo-1", input_price_per_1k=Decimal("1"), output_price_per_1k=Decimal("2"))
    user = UserFactory()
    session = ChatSessionFactory(owner=user)
    services.grant(user=user, amount="0.05", reason="about one turn", initiated_by=StaffUserFactory())

    started = time.monotonic()
    statuses = race(user, session)
    elapsed = time.monotonic() - started

    admitted, refused = statuses.count(201), statuses.count(402)
    wallet = Wallet.objects.get(user=user)
    cheapest, dearest = turn_costs()
    logging.getLogger(__name__).warning(
        "enforced race: %s admitted, %s refused, balance %s, %.2fs",
        admitted,
        refused,
        wallet.balance,
        elapsed,
    )
    assert admitted + refused == RACERS
    assert admitted >= 1
    # A turn starts only while available > 0, and a hold covers far more than a turn costs, so
    # turns run one at a time: the balance ends above -(one turn's cost), and no more turns were
    # served than the 0.05 credits could start.
    assert wallet.balance > -dearest
    assert admitted <= int(Decimal("0.05") / cheapest) + 1
    assert CreditTransaction.objects.filter(wallet=wallet, kind="debit").count() == admitted
    assert not CreditHold.objects.filter(status="held").exists()
    assert wallet.held == 0
    assert check_ledger().ok


@pytest.mark.django_db(transaction=True)
@override_settings(CREDIT_ENFORCEMENT_ENABLED=False)
def test_fifty_racing_turns_without_enforcement_are_all_served_and_billed(slow_echo):
    if not ModelPrice.objects.filter(model="echo-1").exists():
        ModelPriceFactory(model="echo-1", input_price_per_1k=Decimal("1"), output_price_per_1k=Decimal("2"))
    user = UserFactory()
    session = ChatSessionFactory(owner=user)

    statuses = race(user, session)

    assert statuses == [201] * RACERS
    wallet = Wallet.objects.get(user=user)
    events = LLMCallEvent.objects.filter(user=user, status="ok")
    assert events.count() == RACERS
    debits = CreditTransaction.objects.filter(wallet=wallet, kind="debit")
    assert debits.count() == RACERS
    assert wallet.balance == -sum(e.cost for e in events)
    assert wallet.held == 0
    assert not CreditHold.objects.filter(status="held").exists()
    assert check_ledger().ok
