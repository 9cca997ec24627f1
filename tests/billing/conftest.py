"""Fixtures the hold and stream-progress tests share."""

from decimal import Decimal

import pytest

from billing import services
from tests.factories import ModelPriceFactory


@pytest.fixture
def price():
    return ModelPriceFactory(input_price_per_1k=Decimal("1"), output_price_per_1k=Decimal("2"))


@pytest.fixture
def funded(user, staff_user):
    """The user with 10 credits."""
    services.grant(user=user, amount="10", reason="x", initiated_by=staff_user)
    return user
