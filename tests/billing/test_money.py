from decimal import Decimal

import pytest

from core.api import JSONNumber
from core.money import AmountError, format_money, parse_amount, quantize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12.5", Decimal("12.500000")),
        ("0.0120000", Decimal("0.012000")),  # trailing zeros do not count as places
        (7, Decimal("7")),
        (JSONNumber("2.25"), Decimal("2.25")),
        ("-3", Decimal("-3")),
        ("10000.000000", Decimal("10000")),
    ],
)
def test_parse_amount_accepts_exact_decimals(raw, expected):
    assert parse_amount(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "1e3",
        JSONNumber("1e3"),
        "1_000",
        "+5",
        "１０",
        "١٠",
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        "",
        "   ",
        True,
        False,
        None,
        [],
        {},
        1.5,  # a float never reaches money: the JSON parser gives Decimals
        "1.0000001",
        ".5",
        "5.",
        "1" * 2000,
        10**2000,
        "123456789012345",  # more digits than Decimal(20, 6) holds before the point
    ],
)
def test_parse_amount_refuses_anything_else(raw):
    with pytest.raises(AmountError):
        parse_amount(raw)


def test_quantize_rounds_half_up_to_six_places():
    assert quantize(Decimal("0.0000005")) == Decimal("0.000001")
    assert quantize(Decimal("0.00000049")) == Decimal("0.000000")


def test_format_money_always_has_six_places():
    assert format_money(Decimal("12.5")) == "12.500000"
    assert format_money(Decimal("-0.1")) == "-0.100000"
    assert format_money(Decimal("-0")) == format_money(Decimal("-0.0000001")) == "0.000000"


@pytest.mark.parametrize("raw", ["-0", "-0.000", JSONNumber("-0.0"), "0"])
def test_a_zero_written_with_a_sign_is_plain_zero(raw):
    # The grammar allows a leading "-" (a negative adjustment); zero stays zero, never "-0.000000".
    value = parse_amount(raw)
    assert value == 0 and not value.is_signed()
    assert format_money(value) == "0.000000"
