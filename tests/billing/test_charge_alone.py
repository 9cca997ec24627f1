"""A charge made with no transaction open is one statement that commits as it ends, unless its move crosses
a line whose event is recorded in a transaction (a balance line, a cap's alert percent): then it is made
again in one, and every crossing is recorded exactly once either way."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import services
from billing.models import CreditHold, CreditTransaction, LLMCallEvent, SpendLimit, Wallet, WalletEvent
from billing.services import set_spend_cap
from billing.services.crossings import crossings
from billing.services.limits import CAP_ALERT_PERCENTS
from tests.factories import ModelPriceFactory, UserFactory, fund

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal
CAP_ALERT = WalletEvent.Type.SPEND_CAP_THRESHOLD


@pytest.fixture
def price():
    """A millionth of a credit a token: any cost (money has six decimals) is a whole number of tokens."""
    return ModelPriceFactory(model="alone-1", input_price_per_1k=D("0.001"), output_price_per_1k=D("0"))


def charge(user, price, cost: Decimal, *, hold=None):
    return services.charge(
        user=user,
        price=price,
        provider="echo",
        input_tokens=int(cost * 1_000_000),
        output_tokens=0,
        hold=hold,
    )


def charged_alone(user, price, cost: Decimal) -> tuple[bool, list[WalletEvent]]:
    """Charge `cost`: whether it was one statement (no BEGIN, no COMMIT, no retry), and the events it recorded."""
    seen = set(WalletEvent.objects.values_list("id", flat=True))
    with CaptureQueriesContext(connection) as queries:
        charge(user, price, cost)
    new = [e for e in WalletEvent.objects.filter(wallet__user=user).order_by("id") if e.id not in seen]
    return len(queries) == 1, new


def user_with_balance(balance: Decimal, price):
    user = UserFactory()
    if balance > 0:
        fund(user, balance)
    elif balance < 0:
        charge(user, price, -balance)
    assert Wallet.objects.get(user=user).balance == balance
    return user


def test_a_charge_that_crosses_no_line_is_one_statement_and_writes_everything_once(price):
    user = user_with_balance(D("5"), price)
    hold = services.reserve(user=user, amount=D("1")).hold
    with CaptureQueriesContext(connection) as queries:
        result = charge(user, price, D("0.25"), hold=hold)
    assert [q["sql"].split()[0] for q in queries] == ["WITH"]  # the statement alone: no BEGIN, no COMMIT

    wallet = Wallet.objects.get(user=user)
    assert (wallet.balance, wallet.held) == (D("4.75"), D("0"))
    assert result.balance_after == D("4.75")
    assert CreditHold.objects.get(pk=hold.pk).status == CreditHold.Status.SETTLED
    debit = CreditTransaction.objects.get(wallet=wallet, kind="debit")
    assert (debit.amount, debit.balance_after, debit.llm_call_id) == (D("-0.25"), D("4.75"), result.event.pk)
    assert LLMCallEvent.objects.filter(user=user).count() == 1
    assert not WalletEvent.objects.filter(wallet=wallet).exists()


@pytest.mark.parametrize("threshold", ["1", "0"])
def test_every_balance_line_a_charge_crosses_is_recorded_once_and_only_then_in_a_transaction(
    price, settings, threshold
):
    settings.LOW_BALANCE_THRESHOLD = D(threshold)
    balances = ["3", "1.5", "1.000001", "1", "0.5", "0.000001", "0", "-1"]
    costs = ["0", "0.000001", "0.5", "1", "2.5"]
    for before in map(D, balances):
        for cost in map(D, costs):
            user = user_with_balance(before, price)
            expected = crossings(balance_before=before, balance_after=before - cost, threshold=D(threshold))
            alone, events = charged_alone(user, price, cost)
            case = f"{before} - {cost} at threshold {threshold}"
            assert [(e.type, e.balance_before, e.balance) for e in events] == [
                (type_, before, before - cost) for type_ in expected
            ], case
            assert alone == (not expected), case
            assert Wallet.objects.get(user=user).balance == before - cost, case


def test_every_cap_percent_a_charge_reaches_is_alerted_once_and_only_then_in_a_transaction(price):
    amount = D("10")
    spent_before = ["0", "4.9", "5", "7.999999", "8", "9.9", "10", "11"]
    costs = ["0", "0.000001", "0.1", "2.1", "6"]
    for before in map(D, spent_before):
        for cost in map(D, costs):
            user = UserFactory()
            fund(user, "100")  # far from the balance lines
            if before:
                charge(user, price, before)
            set_spend_cap(user=user, kind=SpendLimit.Kind.USER_CAP, amount=amount, period="day")
            expected = [p for p in CAP_ALERT_PERCENTS if before * 100 < amount * p <= (before + cost) * 100]
            alone, events = charged_alone(user, price, cost)
            case = f"{before} + {cost} of {amount}"
            assert [(e.type, e.percent) for e in events] == [(CAP_ALERT, p) for p in expected], case
            assert alone == (not expected), case
            assert SpendLimit.objects.get(wallet__user=user, kind="user_cap").spent == before + cost, case


def test_a_user_without_a_wallet_is_refused_and_nothing_is_written(price):
    user = UserFactory()
    Wallet.objects.filter(user=user).delete()
    with pytest.raises(Wallet.DoesNotExist):
        charge(user, price, D("1"))
    assert not LLMCallEvent.objects.filter(user=user).exists()
