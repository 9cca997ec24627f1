"""The server `make serve` runs (scripts/serve.sh), end to end: plain requests on its WSGI threads."""

import http.client
import json
from decimal import Decimal

import pytest

from billing.models import CreditTransaction, ModelPrice
from tests.factories import ChatSessionFactory, StaffUserFactory, UserFactory, api_token, fund
from tests.live_server import HOST, uvicorn_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def port(django_db_setup, tmp_path_factory):
    with uvicorn_server(
        env={"SECRET_KEY": "deployed-test-not-a-secret"}, log_dir=tmp_path_factory.mktemp("serve")
    ) as port:
        yield port


def call(port, method, path, token, body=None):
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    return response, response.read()


def test_a_plain_turn_and_its_body_round_trip_on_the_wsgi_threads(port):
    ModelPrice.objects.get_or_create(
        model="echo-1", defaults={"input_price_per_1k": Decimal("0.5"), "output_price_per_1k": Decimal("1.5")}
    )
    user = UserFactory()
    fund(user)
    session = ChatSessionFactory(owner=user)
    response, data = call(
        port, "POST", f"/api/v1/sessions/{session.pk}/turns/", api_token(user), {"content": "héllo"}
    )
    assert response.status == 201, data
    assert json.loads(data)["user_message"]["content"] == "héllo"
    assert CreditTransaction.objects.filter(wallet__user=user, kind="debit").count() == 1


def test_the_csv_export_streams_through_the_server(port):
    staff = StaffUserFactory()
    users = [UserFactory() for _ in range(3)]
    for user in users:
        fund(user, "5")
    response, data = call(port, "GET", "/api/v1/admin/transactions/export.csv", api_token(staff))
    assert response.status == 200, data
    assert response.getheader("Content-Type").startswith("text/csv")
    lines = data.decode().splitlines()
    assert len(lines) == 1 + CreditTransaction.objects.count()  # the header, then every row
