"""Tool turns through a real server: uvicorn on loopback with the echo model, the test database, real uploads.

A user uploads a file over HTTP, then a turn searches and reads it: three model calls, each its own
event with its own debit, adding up to the turn's usage.cost. Another user's file stays out of reach.
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal

import pytest
from django.conf import settings

from billing.models import CreditHold, CreditTransaction, LLMCallEvent, Wallet
from billing.reconcile import check_ledger
from billing.services import grant
from sessions_app.models import ToolCallEvent, Turn, TurnCall
from tests.factories import ChatSessionFactory, ModelPriceFactory, StaffUserFactory, UserFactory, api_token

from .test_streaming_server import HOST, ROOT, _free_port

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    """uvicorn serving config.asgi with the echo model, its uploads in a temporary folder."""
    db = settings.DATABASES["default"]
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "SECRET_KEY": "tool-turns-test-not-a-secret",
        "DEBUG": "false",
        "ALLOWED_HOSTS": HOST,
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_POOL_MAX_SIZE": "2",
        "LOG_LEVEL": "WARNING",
        "LLM_PROVIDER": "echo",
        "MEDIA_ROOT": str(tmp_path_factory.mktemp("media")),
    }
    log_path = tmp_path_factory.mktemp("uvicorn") / "server.log"
    log = log_path.open("wb")
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "config.asgi:application",
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    process = subprocess.Popen(  # noqa: S603 - our own server, fixed arguments
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, log_path.read_text()
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/api/v1/health")
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.2)
    yield port
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=15)
    log.close()


def account(amount="10"):
    ModelPriceFactory(model="echo-1")  # a transactional test may run after a flush of the seeded price
    user = UserFactory()
    grant(user=user, amount=Decimal(amount), reason="test funds", initiated_by=StaffUserFactory())
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
