"""System checks of billing's settings: a value that would fail requests is refused before a server starts."""

from decimal import Decimal

import pytest

from accounts.checks import check_token_settings
from billing.checks import (
    CREDIT_AMOUNT_SETTINGS,
    check_credit_amount_settings,
    check_purchase_bounds,
    check_purchase_minimum,
    check_report_time_zone,
    check_setting_floors,
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


@pytest.mark.parametrize(
    ("name", "value", "ids"),
    [
        ("CREDIT_UNIT_PRICE", D("0.01"), []),
        ("CREDIT_UNIT_PRICE", D("0"), ["billing.E004"]),
        ("CREDIT_UNIT_PRICE", D("-1"), ["billing.E004"]),
        ("CREDIT_UNIT_PRICE", D("NaN"), ["billing.E004"]),
        ("SUPPORT_GRANT_LIMIT", D("0"), []),
        ("SUPPORT_GRANT_LIMIT", D("-1"), ["billing.E004"]),
        ("STARTING_CREDITS", D("0"), []),
        ("STARTING_CREDITS", D("-5"), ["billing.E004"]),  # was ignored: a new wallet got nothing, silently
        ("CALL_EVENT_PARTITIONS_AHEAD", 0, []),
        ("CALL_EVENT_PARTITIONS_AHEAD", -3, ["billing.E004"]),
        ("CALL_EVENT_DETACH_LOCK_TIMEOUT_MS", 1, []),
        ("CALL_EVENT_DETACH_LOCK_TIMEOUT_MS", 0, ["billing.E004"]),  # PostgreSQL: 0 waits forever
        ("CALL_EVENT_DETACH_LOCK_TIMEOUT_MS", -1, ["billing.E004"]),
    ],
)
def test_the_check_says_when_a_numeric_setting_is_below_its_floor(settings, name, value, ids):
    setattr(settings, name, value)
    messages = check_setting_floors()
    assert [message.id for message in messages] == ids
    assert all(name in message.msg for message in messages)


@pytest.mark.parametrize("price", [D("0"), D("-1")])
def test_a_free_credit_is_refused_by_its_floor_not_a_division_by_zero(settings, price):
    settings.STRIPE_API_KEY, settings.STRIPE_API_BASE = "sk_live_x", "https://api.stripe.com"
    settings.CREDIT_UNIT_PRICE = price
    assert check_purchase_minimum() == []  # billing.E004 says what is wrong
    assert [message.id for message in check_setting_floors()] == ["billing.E004"]


@pytest.mark.parametrize(
    ("name", "value", "ids"),
    [
        ("AUTH_TOKEN_TTL_HOURS", 1, []),
        ("AUTH_TOKEN_TTL_HOURS", 0, ["accounts.E001"]),
        ("AUTH_TOKEN_TTL_HOURS", -1, ["accounts.E001"]),
        ("AUTH_TOKEN_MAX_PER_USER", 0, ["accounts.E001"]),
    ],
)
def test_the_check_says_when_tokens_would_expire_at_once_or_none_could_be_held(settings, name, value, ids):
    setattr(settings, name, value)
    assert [message.id for message in check_token_settings()] == ids
