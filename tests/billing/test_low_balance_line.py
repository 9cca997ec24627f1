"""The low-balance line is read in one place: the flags, the admin's filter and the crossings agree on it."""

from decimal import Decimal

import pytest
from django.urls import reverse

from billing import services
from billing.models import WalletEvent
from billing.selectors import is_low_balance, low_balance_threshold, wallet_summary
from tests.factories import ModelPriceFactory, StaffUserFactory, UserFactory, fund

pytestmark = pytest.mark.django_db

D = Decimal
# More places than money has: balances are compared with it rounded half up, 1.000001.
SEVEN_PLACES = D("1.0000005")


def charge(user, cost: Decimal):
    """Charge exactly `cost` (a millionth of a credit a token)."""
    price = ModelPriceFactory(model="line-1", input_price_per_1k=D("0.001"), output_price_per_1k=D("0"))
    return services.charge(
        user=user, price=price, provider="echo", input_tokens=int(cost * 1_000_000), output_tokens=0
    )


def test_a_balance_on_the_rounded_line_is_low_everywhere(settings, client):
    settings.LOW_BALANCE_THRESHOLD = SEVEN_PLACES
    user = UserFactory()
    fund(user, "2")

    charge(user, D("0.999999"))  # 2 -> 1.000001: onto the line, from above

    assert low_balance_threshold() == D("1.000001")
    crossed = WalletEvent.objects.filter(wallet__user=user, type=WalletEvent.Type.LOW_BALANCE)
    assert [(event.balance, event.threshold) for event in crossed] == [(D("1.000001"), D("1.000001"))]
    summary = wallet_summary(user=user)
    assert (summary.balance, summary.low_balance, summary.low_balance_threshold) == (
        D("1.000001"),
        True,
        D("1.000001"),
    )
    client.force_login(StaffUserFactory(is_superuser=True))
    listed = client.get(reverse("admin:billing_wallet_changelist") + "?low_balance=yes")
    assert user.pk in {wallet.user_id for wallet in listed.context["cl"].result_list}


def test_a_balance_above_the_rounded_line_is_low_nowhere(settings):
    settings.LOW_BALANCE_THRESHOLD = SEVEN_PLACES
    user = UserFactory()
    fund(user, "2")

    charge(user, D("0.999998"))  # 2 -> 1.000002

    assert not WalletEvent.objects.filter(wallet__user=user).exists()
    assert not is_low_balance(D("1.000002"))
    assert not wallet_summary(user=user).low_balance
