"""Ledger CSV export: header and rows, filters, initiator columns, streaming, and staff-only access."""

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.http import StreamingHttpResponse
from rest_framework.test import APIClient

from billing import services
from billing.models import CreditTransaction
from reporting.exports import stream_ledger_csv
from reporting.selectors import LEDGER_EXPORT_COLUMNS, ledger_export_queryset, ledger_export_rows
from tests.factories import ModelPriceFactory, UserFactory, api_token

URL = "/api/v1/admin/transactions/export.csv"
DEBIT_AT = datetime(2020, 1, 6, 12, 0, tzinfo=UTC)
HEADER = [
    "id",
    "created_at",
    "user_id",
    "username",
    "kind",
    "amount",
    "balance_after",
    "reason",
    "initiated_by_id",
    "initiated_by_username",
    "llm_call_id",
    "idempotency_key",
    "refund_of",
]


def read_csv(response) -> list[dict]:
    assert isinstance(response, StreamingHttpResponse)
    text = b"".join(response.streaming_content).decode("utf-8")
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == HEADER
    return list(reader)


@pytest.fixture
def ledger(db, staff_user):
    """Three grants stamped now and, between them by id, a debit on 2020-01-06 12:00 UTC."""
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    first = services.grant(
        user=alice, amount="10", reason="Welcome", initiated_by=staff_user, idempotency_key="w-1"
    )
    second = services.grant(user=bob, amount="5", reason="=HYPERLINK(evil)", initiated_by=staff_user)
    price = ModelPriceFactory(
        model="gpt-4.1-mini", input_price_per_1k=Decimal("1"), output_price_per_1k=Decimal("2")
    )
    debit = services.charge(
        user=alice,
        price=price,
        provider="openai",
        input_tokens=1000,
        output_tokens=500,
        occurred_at=DEBIT_AT,
    ).transaction
    third = services.grant(user=alice, amount="0.5", reason="Late", initiated_by=staff_user)
    return {"alice": alice, "bob": bob, "first": first, "second": second, "debit": debit, "third": third}


def test_export_refuses_anonymous_with_401_and_users_with_403_as_json(api_client, user_client):
    anonymous = api_client.get(URL, HTTP_ACCEPT="text/csv")
    not_staff = user_client.get(URL, HTTP_ACCEPT="text/csv")

    assert anonymous.status_code == 401
    assert anonymous["Content-Type"] == "application/json"
    assert "detail" in anonymous.json()
    assert not_staff.status_code == 403
    assert not_staff["Content-Type"] == "application/json"


@pytest.mark.parametrize("url", [URL, URL + "/"])
def test_export_streams_the_whole_ledger_as_csv(staff_client, ledger, staff_user, url):
    response = staff_client.get(url)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="ledger-')
    assert response["Content-Disposition"].endswith('.csv"')
    rows = read_csv(response)
    assert [r["id"] for r in rows] == [str(ledger[name].pk) for name in ("first", "second", "debit", "third")]
    first, second, debit, third = rows
    assert first == {
        "id": str(ledger["first"].pk),
        "created_at": ledger["first"].created_at.astimezone(UTC).isoformat(),
        "user_id": str(ledger["alice"].pk),
        "username": "alice",
        "kind": "grant",
        "amount": "10.000000",
        "balance_after": "10.000000",
        "reason": "Welcome",
        "initiated_by_id": str(staff_user.pk),
        "initiated_by_username": staff_user.username,
        "llm_call_id": "",
        "idempotency_key": "w-1",
        "refund_of": "",
    }
    # A reason a spreadsheet would run as a formula is defused; negative amounts are left alone.
    assert second["reason"] == "'=HYPERLINK(evil)"
    assert (debit["kind"], debit["amount"], debit["balance_after"]) == ("debit", "-2.000000", "8.000000")
    assert (debit["initiated_by_id"], debit["initiated_by_username"]) == ("", "")
    assert debit["llm_call_id"] == str(ledger["debit"].llm_call_id)
    assert debit["created_at"] == "2020-01-06T12:00:00+00:00"
    assert third["balance_after"] == "8.500000"


def test_export_accepts_a_staff_token(ledger, staff_user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(staff_user)}")

    response = client.get(URL, HTTP_ACCEPT="text/csv")

    assert response.status_code == 200
    assert len(read_csv(response)) == 4


def test_export_accepts_a_staff_session(ledger, staff_user, client):
    client.force_login(staff_user)

    response = client.get(URL)

    assert response.status_code == 200
    assert len(read_csv(response)) == 4


def test_export_filters_by_kind_and_user(staff_client, ledger):
    grants = read_csv(staff_client.get(URL, {"kind": "grant"}))
    bobs = read_csv(staff_client.get(URL, {"user_id": ledger["bob"].pk}))
    alices_debits = read_csv(staff_client.get(URL, {"user_id": ledger["alice"].pk, "kind": "debit"}))
    nobody = read_csv(staff_client.get(URL, {"user_id": 987654321}))

    assert [r["kind"] for r in grants] == ["grant", "grant", "grant"]
    assert [r["username"] for r in bobs] == ["bob"]
    assert [r["id"] for r in alices_debits] == [str(ledger["debit"].pk)]
    assert nobody == []


def test_export_created_after_is_inclusive_and_created_before_exclusive(staff_client, ledger):
    def ids(**params):
        return [r["id"] for r in read_csv(staff_client.get(URL, params))]

    everything = [str(ledger[n].pk) for n in ("first", "second", "debit", "third")]
    grants = [str(ledger[n].pk) for n in ("first", "second", "third")]
    debit = [str(ledger["debit"].pk)]

    assert ids(created_after="2020-01-06T12:00:00Z") == everything
    assert ids(created_after="2020-01-06T12:00:00.000001Z") == grants
    assert ids(created_after="2020-01-06", created_before="2020-01-06T12:00:00Z") == []
    assert ids(created_after="2020-01-06", created_before="2020-01-07") == debit
    assert ids(created_before="2020-01-06T12:00:00.000001") == debit
    assert ids(created_after="2020-01-06T13:00:00+01:00", created_before="2021-01-01") == debit
    assert ids(created_after="2021-01-01") == grants


def test_export_refuses_an_unencoded_plus_offset_like_the_users_ledger(staff_client, ledger):
    # "+01:00" sent raw arrives as " 01:00" (a "+" in a query string means a space): a hint, not a guess.
    response = staff_client.get(f"{URL}?kind=debit&created_after=2020-01-06T13:00:00+01:00")

    assert response.status_code == 400
    assert "URL-encoded" in response.json()["created_after"][0]
    encoded = staff_client.get(f"{URL}?kind=debit&created_after=2020-01-06T13:00:00%2B01:00")
    assert [r["id"] for r in read_csv(encoded)] == [str(ledger["debit"].pk)]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"kind": "gift"}, "kind"),
        ({"kind": "GRANT"}, "kind"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_after": "2026-13-01"}, "created_after"),
        ({"created_before": "2026-01-06T25:00"}, "created_before"),
        ({"created_before": "２０２６-01-06"}, "created_before"),
        ({"created_before": "1e3"}, "created_before"),
        ({"user_id": "abc"}, "user_id"),
        ({"user_id": "-3"}, "user_id"),
        ({"user_id": "0"}, "user_id"),
        ({"kind": "grant\x00"}, "kind"),
        ({"unrelated": "x\x00y"}, "unrelated"),
    ],
)
def test_export_refuses_unknown_kind_or_malformed_filters_with_json_400(staff_client, db, params, field):
    response = staff_client.get(URL, params, HTTP_ACCEPT="text/csv")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert isinstance(response.json()[field][0], str)


@pytest.mark.parametrize("too_large", [str(2**63), "99999999999999999999999", "9" * 5000])
def test_export_for_a_user_id_too_large_to_name_a_row_is_its_header_alone(staff_client, ledger, too_large):
    # It was a 400; an id no row can have is simply not found: no rows, as for an unknown user.
    response = staff_client.get(URL, {"user_id": too_large}, HTTP_ACCEPT="text/csv")

    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8")
    assert list(csv.reader(io.StringIO(text))) == [HEADER]


def test_export_lists_the_known_kinds_in_its_error(staff_client, db):
    message = staff_client.get(URL, {"kind": "gift"}).json()["kind"][0]

    assert "grant, debit, refund, adjustment" in message


def test_export_reads_the_ledger_in_chunks_not_all_at_once(ledger, django_assert_max_num_queries):
    # Two rows per chunk: a server-side cursor fetches repeatedly; the rows arrive lazily from one generator.
    rows = ledger_export_rows(ledger_export_queryset(), chunk_size=2)

    assert not isinstance(rows, list | tuple)
    with django_assert_max_num_queries(1):
        first = next(rows)
    assert first[0] == ledger["first"].pk
    assert len(first) == len(LEDGER_EXPORT_COLUMNS)
    assert [row[0] for row in rows] == [ledger[n].pk for n in ("second", "debit", "third")]


def test_export_endpoint_fetches_rows_through_a_chunked_iterator(staff_client, ledger, monkeypatch):
    from django.db.models.query import QuerySet

    from reporting.selectors import EXPORT_CHUNK_SIZE

    calls = []
    original = QuerySet.iterator

    def spy(self, chunk_size=None):
        calls.append((self.model, chunk_size))
        return original(self, chunk_size=chunk_size)

    monkeypatch.setattr(QuerySet, "iterator", spy)

    response = staff_client.get(URL)
    assert calls == []  # nothing is read before the response body is consumed
    rows = read_csv(response)

    assert len(rows) == 4
    assert calls == [(CreditTransaction, EXPORT_CHUNK_SIZE)]


def test_stream_ledger_csv_takes_an_admin_selection_or_tuples(ledger):
    selection = CreditTransaction.objects.filter(pk__in=[ledger["third"].pk, ledger["first"].pk])

    from_queryset = read_csv(stream_ledger_csv(selection, filename="selected.csv"))
    from_tuples = read_csv(stream_ledger_csv(ledger_export_rows(selection)))

    assert [r["id"] for r in from_queryset] == [str(ledger["first"].pk), str(ledger["third"].pk)]
    assert from_tuples == from_queryset
    assert stream_ledger_csv(selection, filename="selected.csv")["Content-Disposition"] == (
        'attachment; filename="selected.csv"'
    )
