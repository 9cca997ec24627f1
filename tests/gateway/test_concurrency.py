"""Bursts against the limits: 30 concurrent calls never pass a key's limit, a thin wallet or a spending cap by more than one hold."""

import json
import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client

from accounts.keys import create_api_key
from billing.models import CreditHold, LLMCallEvent, ModelPrice, SpendLimit, Wallet, WalletEvent
from billing.reconcile import check_ledger
from billing.services import compute_cost, set_spend_cap
from sessions_app.providers import estimate_prompt_tokens
from sessions_app.tools import tool_specs
from tests.factories import ChatSessionFactory, UserFactory, api_token, fund

pytestmark = pytest.mark.django_db(transaction=True)

BURST = 30
MAX_TOKENS = 64
MESSAGES = [{"role": "user", "content": "How much is a burst?"}]


@pytest.fixture
def price():
    return ModelPrice.objects.get_or_create(
        model="echo-1", defaults={"input_price_per_1k": Decimal("0.5"), "output_price_per_1k": Decimal("1.5")}
    )[0]


def hold_of(price) -> Decimal:
    return compute_cost(price=price, input_tokens=estimate_prompt_tokens(MESSAGES), output_tokens=MAX_TOKENS)


def burst(calls) -> Counter:
    """Run the calls at once, each in its own thread (its own connection); count the statuses."""
    statuses: Counter = Counter()
    barrier = threading.Barrier(len(calls))
    lock = threading.Lock()

    def run(call):
        try:
            barrier.wait()
            status = call()
            with lock:
                statuses[status] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def gateway_call(secret):
    def call():
        response = Client().post(
            "/v1/chat/completions",
            json.dumps({"model": "echo-1", "messages": MESSAGES, "max_tokens": MAX_TOKENS}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret}",
        )
        return response.status_code

    return call


def turn_call(token, session_id):
    def call():
        response = Client().post(
            f"/api/v1/sessions/{session_id}/turns/",
            json.dumps({"content": "How much is a burst?"}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {token}",
        )
        return response.status_code

    return call


def spent(user) -> Decimal:
    return sum((e.cost for e in LLMCallEvent.objects.filter(user=user)), Decimal(0))


def test_a_burst_never_passes_a_key_limit_by_more_than_one_hold(settings, price):
    settings.THROTTLE_GATEWAY_RATE = None
    user = UserFactory()
    fund(user, "100")
    hold = hold_of(price)
    key, secret = create_api_key(user=user, name="burst", limit=3 * hold)
    statuses = burst([gateway_call(secret)] * BURST)
    assert set(statuses) <= {200, 402} and statuses[200] >= 3 and statuses[402] > 0
    assert spent(user) <= 3 * hold + hold
    limit = SpendLimit.objects.get(pk=key.spend_limit_id)
    assert limit.held == 0 and limit.spent == spent(user)
    assert not CreditHold.objects.filter(status="held").exists()
    assert check_ledger().ok


def test_a_burst_never_overdraws_a_thin_wallet_under_enforcement_by_more_than_one_hold(settings, price):
    settings.THROTTLE_GATEWAY_RATE = None
    settings.CREDIT_ENFORCEMENT_ENABLED = True
    user = UserFactory()
    hold = hold_of(price)
    fund(user, str(3 * hold))
    _, secret = create_api_key(user=user, name="thin")
    statuses = burst([gateway_call(secret)] * BURST)
    assert set(statuses) <= {200, 402} and statuses[402] > 0
    wallet = Wallet.objects.get(user=user)
    assert wallet.balance >= -hold and wallet.held == 0
    assert check_ledger().ok


def test_a_burst_of_turns_and_gateway_calls_never_passes_a_spending_cap_by_more_than_one_hold(
    settings, price
):
    settings.THROTTLE_GATEWAY_RATE = None
    settings.THROTTLE_TURN_RATE = None
    settings.LLM_MAX_OUTPUT_TOKENS = MAX_TOKENS
    user = UserFactory()
    fund(user, "100")
    _, secret = create_api_key(user=user, name="capped")
    token = api_token(user)
    sessions = [ChatSessionFactory(owner=user) for _ in range(BURST // 2)]
    # A turn's hold also counts the tools offered: the biggest hold of the two.
    turn_hold = compute_cost(
        price=price, input_tokens=estimate_prompt_tokens(MESSAGES, tool_specs()), output_tokens=MAX_TOKENS
    )
    biggest = max(hold_of(price), turn_hold)
    cap = 3 * hold_of(price)
    set_spend_cap(user=user, kind=SpendLimit.Kind.USER_CAP, amount=cap, period="day")
    calls = [gateway_call(secret) for _ in range(BURST // 2)] + [turn_call(token, s.pk) for s in sessions]
    statuses = burst(calls)
    assert set(statuses) <= {200, 201, 402} and statuses[402] > 0
    assert spent(user) <= cap + biggest
    assert not CreditHold.objects.filter(status="held").exists()
    # Then one call at a time until the cap refuses: the period's charges have reached it by then.
    while gateway_call(secret)() == 200:
        pass
    alerts = Counter(
        WalletEvent.objects.filter(wallet__user=user, type="wallet.spend_cap_threshold").values_list(
            "percent", flat=True
        )
    )
    assert alerts and all(count == 1 for count in alerts.values())
    assert alerts == Counter({50: 1, 80: 1, 100: 1})
    assert check_ledger().ok
