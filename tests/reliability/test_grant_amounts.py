"""Hostile grant amounts, as raw request bodies: every one is 400/413/415, never a 500, nothing written.

tests/billing/test_staff_api.py pins the field messages for amounts sent through a JSON encoder; this
table sends the bytes themselves, so the strict parser, the body-size guard and the content-type
negotiation are under test too, and each row also checks the wallet and the ledger stay untouched.
"""

import json

import pytest

from billing.models import CreditTransaction, Wallet
from billing.reconcile import check_ledger

pytestmark = pytest.mark.django_db

JSON = "application/json"
TWO_THOUSAND_DIGITS = "1" + "0" * 1999
THREE_MB = 3 * 1024 * 1024


def body(amount_json: str, reason: str = '"hostile"') -> bytes:
    return f'{{"amount": {amount_json}, "reason": {reason}}}'.encode()


# (case, raw body, content type, expected status, the key the 400 names or None)
TABLE = [
    ("zero", body("0"), JSON, 400, "amount"),
    ("zero as a string", body('"0"'), JSON, 400, "amount"),
    ("minus one", body("-1"), JSON, 400, "amount"),
    ("just over the maximum", body('"10000.000001"'), JSON, 400, "amount"),
    ("just over the maximum as a number", body("10000.000001"), JSON, 400, "amount"),
    ("1e309 (a float would be inf)", body("1e309"), JSON, 400, "amount"),
    ("1e309 as a string", body('"1e309"'), JSON, 400, "amount"),
    ('"NaN"', body('"NaN"'), JSON, 400, "amount"),
    ("bare NaN", body("NaN"), JSON, 400, "detail"),
    ('"Infinity"', body('"Infinity"'), JSON, 400, "amount"),
    ("bare Infinity", body("Infinity"), JSON, 400, "detail"),
    ("bare -Infinity", body("-Infinity"), JSON, 400, "detail"),
    ('"abc"', body('"abc"'), JSON, 400, "amount"),
    ("null", body("null"), JSON, 400, "amount"),
    ("true", body("true"), JSON, 400, "amount"),
    ("[]", body("[]"), JSON, 400, "amount"),
    ("{}", body("{}"), JSON, 400, "amount"),
    ("full-width digits", body(json.dumps("１０")), JSON, 400, "amount"),
    ("full-width digits, unescaped", '{"amount": "１０", "reason": "x"}'.encode(), JSON, 400, "amount"),
    ("Arabic-Indic digits", body(json.dumps("١٠")), JSON, 400, "amount"),
    ("7 decimal places", body('"1.0000001"'), JSON, 400, "amount"),
    ("7 decimal places as a number", body("1.0000001"), JSON, 400, "amount"),
    ("a 2,000-character number", body(TWO_THOUSAND_DIGITS), JSON, 400, "amount"),
    ("a 2,000-character number as a string", body(f'"{TWO_THOUSAND_DIGITS}"'), JSON, 400, "amount"),
    ("a 2,000-character fraction", body("0." + "1" * 1998), JSON, 400, "amount"),
    ("a 3 MB body", body('"5"', json.dumps("x" * THREE_MB)), JSON, 413, "detail"),
    (
        "the wrong content type (form)",
        b"amount=5&reason=x",
        "application/x-www-form-urlencoded",
        415,
        "detail",
    ),
    ("the wrong content type (text)", body('"5"'), "text/plain", 415, "detail"),
    ("duplicate JSON keys", b'{"amount": "1", "amount": "9999", "reason": "x"}', JSON, 400, "detail"),
    ("duplicate reason keys", b'{"amount": "1", "reason": "x", "reason": "y"}', JSON, 400, "detail"),
    ("an exponent", body("1E2"), JSON, 400, "amount"),
    ("a plus sign", body('"+5"'), JSON, 400, "amount"),
    ("not UTF-8", b'{"amount": "5", "reason": "\xff"}', JSON, 400, "detail"),
    ("an empty body", b"", JSON, 400, "amount"),
    ("a JSON array", b'[{"amount": "5", "reason": "x"}]', JSON, 400, None),
    (
        "deeply nested",
        b'{"amount": ' + b"[" * 100_000 + b"]" * 100_000 + b', "reason": "x"}',
        JSON,
        400,
        None,
    ),
]


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "key"), [r[1:] for r in TABLE], ids=[r[0] for r in TABLE]
)
def test_a_hostile_grant_amount_is_refused_and_writes_nothing(
    staff_client, user, raw, content_type, status, key
):
    before = Wallet.objects.values_list("balance", "held").get(user=user)

    response = staff_client.generic(
        "POST", f"/api/v1/admin/wallets/{user.pk}/grant", raw, content_type=content_type
    )

    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    if key is not None:
        assert key in response.json()
    assert not CreditTransaction.objects.exists()
    assert Wallet.objects.values_list("balance", "held").get(user=user) == before
    assert check_ledger().ok


def test_the_table_names_every_case_the_issue_lists():
    # The issue's list, by case name: a row dropped from the table fails here rather than passing silently.
    names = {row[0] for row in TABLE}
    for required in [
        "zero",
        "minus one",
        "just over the maximum",
        "1e309 (a float would be inf)",
        '"NaN"',
        '"Infinity"',
        '"abc"',
        "null",
        "true",
        "[]",
        "{}",
        "full-width digits",
        "7 decimal places",
        "a 2,000-character number",
        "a 3 MB body",
        "the wrong content type (form)",
        "duplicate JSON keys",
    ]:
        assert required in names
