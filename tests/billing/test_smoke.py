from decimal import Decimal

from billing.models import Wallet


def test_new_user_gets_an_empty_wallet(user):
    assert Wallet.objects.get(user=user).balance == Decimal("0")
