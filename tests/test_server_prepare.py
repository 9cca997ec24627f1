"""DATABASE_SERVER_PREPARE: the hot path prepares its statements on the server only when allowed.

With `false` (PgBouncer 1.18 in transaction mode hands each transaction to any server connection)
nothing may be prepared on the server at all; tests/fleet/ runs the same path through a real PgBouncer.
"""

import json
import subprocess
import sys

import pytest
from django.db import connection
from django.test import Client

from tests.factories import ChatSessionFactory, ModelPriceFactory, UserFactory, fund, token_client_for
from tests.test_security import ROOT, production_env


def prepared_on_this_connection() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prepare", [True, False])
def test_turn_and_gateway_call_prepare_on_the_server_only_when_allowed(settings, prepare):
    settings.DATABASE_SERVER_PREPARE = prepare
    connection.close()  # a fresh server connection: nothing prepared by earlier tests
    try:
        ModelPriceFactory(model="echo-1")  # transaction=True flushed the migration's prices
        user = UserFactory()
        fund(user, "10")
        session = ChatSessionFactory(owner=user)
        client = token_client_for(user)
        for n in range(6):  # past psycopg's default prepare_threshold (5)
            turn = client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": f"hi {n}"}, format="json")
            assert turn.status_code == 201, turn.content
        key = client.post("/api/v1/users/me/keys", {"name": "k"}, format="json").json()["key"]
        answer = Client().post(  # the key alone: no user token beside it
            "/v1/chat/completions",
            json.dumps({"model": "echo-1", "messages": [{"role": "user", "content": "hello"}]}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {key}",
        )
        assert answer.status_code == 200, answer.content
        prepared = prepared_on_this_connection()
        if prepare:
            # the session read, the reservation, the charge, the turn's rows (at least)
            assert len(prepared) >= 4, prepared
        else:
            assert prepared == []
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("value", "threshold", "no_cursors"), [("false", "None", "True"), ("true", "absent", "False")]
)
def test_server_prepare_false_turns_psycopgs_threshold_and_server_side_cursors_off(
    value, threshold, no_cursors
):
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "db = s.DATABASES['default']; "
        "print(s.DATABASE_SERVER_PREPARE, db.get('OPTIONS', {}).get('prepare_threshold', 'absent'), "
        "db.get('DISABLE_SERVER_SIDE_CURSORS', False))"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=production_env(DATABASE_SERVER_PREPARE=value),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [value.capitalize(), threshold, no_cursors]
