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


def call(port, method, path, token, body=None, *, chunks=None):
    """A request with a JSON body, or with `chunks` sent as they are (Transfer-Encoding: chunked, no
    Content-Length, as curl -H does)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    if chunks is not None:
        conn.request(method, path, body=iter(chunks), headers=headers, encode_chunked=True)
    else:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    return response, response.read()


def priced_echo() -> None:
    ModelPrice.objects.get_or_create(
        model="echo-1", defaults={"input_price_per_1k": Decimal("0.5"), "output_price_per_1k": Decimal("1.5")}
    )


def test_a_plain_turn_and_its_body_round_trip_on_the_wsgi_threads(port):
    priced_echo()
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


def test_a_chunked_body_is_read_and_one_too_large_refused(port):
    from sessions_app.models import ChatSession

    priced_echo()
    user = UserFactory()
    token = api_token(user)
    # Was served as an empty body: a bad model made a default session (201).
    response, data = call(
        port, "POST", "/api/v1/sessions/", token, chunks=[b'{"title": "chunked", ', b'"model": "nope"}']
    )
    assert response.status == 400 and "model" in json.loads(data), data
    assert not ChatSession.objects.filter(owner=user).exists()
    response, data = call(port, "POST", "/api/v1/sessions/", token, chunks=[b'{"title": ', b'"chunked"}'])
    assert response.status == 201 and json.loads(data)["title"] == "chunked", data
    # Past every path's limit: 413, read no further than that (it was read whole, then refused).
    response, data = call(port, "POST", "/api/v1/sessions/", token, chunks=[b" " * 65536] * 80)
    assert response.status == 413 and json.loads(data)["code"] == "request_too_large"


def test_pages_work_before_collectstatic(tmp_path_factory):
    # DEBUG off and no collectstatic (a bare uvicorn rather than `make serve`): every page naming a
    # static file was a 500 ("Missing staticfiles manifest entry"), the API docs and the admin included.
    empty = tmp_path_factory.mktemp("no-static")
    with uvicorn_server(
        env={"SECRET_KEY": "deployed-test-not-a-secret", "STATIC_ROOT": str(empty)},
        log_dir=tmp_path_factory.mktemp("serve-uncollected"),
    ) as port:
        for path in ("/api/v1/docs/", "/admin/login/", "/signin/"):
            conn = http.client.HTTPConnection(HOST, port, timeout=10)
            conn.request("GET", path)
            response = conn.getresponse()
            page = response.read().decode()
            assert response.status == 200, (path, page[:300])
        asset = next(
            part.split('"')[0] for part in page.split('href="/static/')[1:] if ".css" in part.split('"')[0]
        )
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        conn.request("GET", f"/static/{asset}")
        response = conn.getresponse()
        assert response.status == 200 and response.read(), asset  # served from the app's own folder
