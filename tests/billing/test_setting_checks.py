"""System checks of billing's settings: a value that would fail requests is refused before a server starts."""

from decimal import Decimal

import pytest

from billing.checks import (
    CREDIT_AMOUNT_SETTINGS,
    check_credit_amount_settings,
    check_purchase_bounds,
    check_report_time_zone,
)

D = Decimal


@pytest.mark.parametrize("name", CREDIT_AMOUNT_SETTINGS)
@pytest.mark.parametrize(
    ("value", "ids"),
    [
        (D("1.000000"), []),
        (D("0"), []),
        ("2.5", []),
        (D("1.0000005"), ["billing.W003"]),
        (D("NaN"), ["billing.E001"]),
        (D("Infinity"), ["billing.E001"]),
        ("lots", ["billing.E001"]),
    ],
)
def test_the_check_says_when_a_credit_amount_setting_is_not_money(settings, name, value, ids):
    setattr(settings, name, value)
    messages = check_credit_amount_settings()
    assert [message.id for message in messages] == ids
    assert all(name in message.msg for message in messages)


@pytest.mark.parametrize(
    ("zone", "ids"),
    [("UTC", []), ("Europe/Berlin", []), ("Mars/Base", ["billing.E002"]), ("", ["billing.E002"])],
)
def test_the_check_says_when_the_report_time_zone_is_no_zone(settings, zone, ids):
    """Every charge files its call under its day in REPORT_TIME_ZONE: a name that is no zone fails them all."""
    settings.REPORT_TIME_ZONE = zone
    assert [message.id for message in check_report_time_zone()] == ids


@pytest.mark.parametrize(
    ("low", "high", "ids"),
    [
        (5, 10000, []),
        (1, 1, []),
        (0, 10, ["billing.E003"]),
        (-5, 10, ["billing.E003"]),
        (20, 10, ["billing.E003"]),
    ],
)
def test_the_check_says_when_no_purchase_or_an_empty_one_could_be_made(settings, low, high, ids):
    settings.PURCHASE_MIN_CREDITS, settings.PURCHASE_MAX_CREDITS = low, high
    assert [message.id for message in check_purchase_bounds()] == ids
