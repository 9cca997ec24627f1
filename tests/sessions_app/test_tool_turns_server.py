"""Tool turns through a real server: uvicorn on loopback with the echo model, the test database, real uploads.

A user uploads a file over HTTP, then a turn searches and reads it: three model calls, each its own
event with its own debit, adding up to the turn's usage.cost. Another user's file stays out of reach.
"""

import http.client
import json
import uuid
from decimal import Decimal

import pytest

from billing.models import CreditHold, CreditTransaction, LLMCallEvent, Wallet
from billing.reconcile import check_ledger
from sessions_app.models import ToolCallEvent, Turn, TurnCall
from tests.factories import ChatSessionFactory, ModelPriceFactory, UserFactory, api_token, fund
from tests.live_server import HOST, uvicorn_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    """uvicorn serving config.asgi with the echo model, its uploads in a temporary folder."""
    env = {
        "SECRET_KEY": "tool-turns-test-not-a-secret",
        "DATABASE_POOL_MAX_SIZE": "2",
        "LLM_PROVIDER": "echo",
        "MEDIA_ROOT": str(tmp_path_factory.mktemp("media")),
    }
    with uvicorn_server(env=env, log_dir=tmp_path_factory.mktemp("uvicorn")) as port:
        yield port


def account(amount="10"):
    ModelPriceFactory(model="echo-1")  # a transactional test may run after a flush of the seeded price
    user = UserFactory()
    fund(user, amount)
    return user, api_token(user)


def call(port, token, method, path, body=None, content_type="application/json"):
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    headers = {"Authorization": f"Token {token}"}
    if body is not None:
        headers["Content-Type"] = content_type
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    return response.status, data


def upload(port, token, name: str, data: bytes) -> int:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, answer = call(
        port, token, "POST", "/api/v1/files/", body, f"multipart/form-data; boundary={boundary}"
    )
    assert status == 201, answer
    return json.loads(answer)["id"]


def test_through_the_server_a_turn_that_searches_then_reads_a_file_bills_three_calls(server):
    user, token = account()
    file_id = upload(
        server, token, "budget.txt", b"Budget 2026: travel 12,000 credits. The offsite counts as training."
    )
    session = ChatSessionFactory(owner=user)

    status, answer = call(
        server,
        token,
        "POST",
        f"/api/v1/sessions/{session.pk}/turns/",
        json.dumps({"content": f"Please search for travel budget and read file {file_id}."}),
    )

    assert status == 201, answer
    body = json.loads(answer)
    calls = body["usage"]["calls"]
    assert [c["purpose"] for c in calls] == ["chat", "tool_followup", "tool_followup"]
    cost = Decimal(body["usage"]["cost"])
    assert cost == sum(Decimal(c["cost"]) for c in calls) > 0
    debits = CreditTransaction.objects.filter(kind="debit", llm_call_id__in=[c["id"] for c in calls])
    assert debits.count() == 3 and -sum(debits.values_list("amount", flat=True)) == cost
    assert LLMCallEvent.objects.filter(user=user).count() == 3
    assert Wallet.objects.get(user=user).balance == Decimal("10") - cost == Decimal(body["balance_after"])
    assert [(t["tool"], t["status"]) for t in body["tool_calls"]] == [("search", "ok"), ("file_read", "ok")]
    assert "The offsite counts as training." in body["assistant_message"]["content"]
    turn = Turn.objects.get(pk=body["id"])
    assert (
        TurnCall.objects.filter(turn=turn).count() == 3
        and ToolCallEvent.objects.filter(turn=turn).count() == 2
    )
    assert not CreditHold.objects.filter(wallet__user=user, status=CreditHold.Status.HELD).exists()
    assert check_ledger().ok


def test_through_the_server_another_users_file_is_out_of_reach(server):
    owner, owner_token = account()
    theirs = upload(server, owner_token, "merger.txt", b"Confidential: the Initech merger closes Friday.")
    user, token = account()
    session = ChatSessionFactory(owner=user)

    status, answer = call(
        server,
        token,
        "POST",
        f"/api/v1/sessions/{session.pk}/turns/",
        json.dumps({"content": f"search for Initech merger and read file {theirs}"}),
    )

    assert status == 201, answer
    body = json.loads(answer)
    assert [(t["tool"], t["status"]) for t in body["tool_calls"]] == [
        ("search", "ok"),
        ("file_read", "error"),
    ]
    assert b"Confidential" not in answer and b"Friday" not in answer
    for path in (f"/api/v1/files/{theirs}/", f"/api/v1/files/{theirs}/content"):
        assert call(server, token, "GET", path)[0] == 404
    assert call(server, token, "DELETE", f"/api/v1/files/{theirs}/")[0] == 404
    assert json.loads(call(server, token, "GET", "/api/v1/files/")[1])["results"] == []
    assert call(server, owner_token, "GET", f"/api/v1/files/{theirs}/content")[1] == (
        b"Confidential: the Initech merger closes Friday."
    )
