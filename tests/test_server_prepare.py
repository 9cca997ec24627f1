"""DATABASE_SERVER_PREPARE: the hot path prepares its statements on the server only when allowed.

With `false` (PgBouncer 1.18 in transaction mode hands each transaction to any server connection)
nothing may be prepared on the server at all; tests/fleet/ runs the same path through a real PgBouncer.
"""

import json
import subprocess
import sys
from decimal import Decimal

import pytest
from django.db import ProgrammingError, connection
from django.test import Client
from knox.models import AuthToken

from accounts.models import ApiKey
from billing.models import WalletEvent
from core import statement_functions
from core.db import execute_prepared
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
            # and the credential each request presents, read once prepared (accounts.selectors),
            # not compiled by the ORM and planned by the server on every request
            for table in (AuthToken._meta.db_table, ApiKey._meta.db_table):
                assert any(table in statement for statement in prepared), (table, prepared)
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


def stmt_functions() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname LIKE 'creditdesk_stmt_%%'")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_behind_a_pooler_the_hot_statements_run_as_server_functions(settings):
    """Nothing prepared on the server connection, yet each hot statement is planned once per server
    backend: it runs as a PL/pgSQL function holding it, made on first use and found by the next."""
    settings.DATABASE_SERVER_PREPARE = False
    statement_functions._made.clear()
    connection.close()
    try:
        ModelPriceFactory(model="echo-1")
        user = UserFactory()
        fund(user, "10")
        session = ChatSessionFactory(owner=user)
        client = token_client_for(user)
        for n in range(3):
            turn = client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": f"hi {n}"}, format="json")
            assert turn.status_code == 201, turn.content
        assert prepared_on_this_connection() == []
        bodies = stmt_functions()
        for part in ("rate_before", "expired_holds", "call_event", "moved_session"):
            assert any(part in body for body in bodies), part
        made = len(bodies)
        statement_functions._made.clear()  # another process: it finds the functions made
        assert (
            client.post(
                f"/api/v1/sessions/{session.pk}/turns/", {"content": "again"}, format="json"
            ).status_code
            == 201
        )
        assert len(stmt_functions()) == made
        # A tool turn (its tool runs are arrays of the turn's statement), then a turn whose charge
        # crosses the low-balance line: its function aborts alone and the charge runs in a transaction.
        searched = client.post(
            f"/api/v1/sessions/{session.pk}/turns/", {"content": "Please search for hi."}, format="json"
        )
        assert searched.status_code == 201, searched.content
        assert [t["tool"] for t in searched.json()["tool_calls"]] == ["search"]
        wallet = user.wallet
        wallet.refresh_from_db()
        settings.LOW_BALANCE_THRESHOLD = wallet.balance - Decimal("0.000001")
        crossing = client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "low"}, format="json")
        assert crossing.status_code == 201, crossing.content
        assert list(WalletEvent.objects.filter(wallet=wallet).values_list("type", flat=True)) == [
            WalletEvent.Type.LOW_BALANCE
        ]
        assert prepared_on_this_connection() == []
        wallet.refresh_from_db()
        assert (
            wallet.balance == Decimal("10") + sum(t.amount for t in wallet.transactions.filter(kind="debit"))
            and wallet.held == 0
        )
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_statement_whose_function_cannot_be_made_is_sent_as_it_is(settings, caplog, monkeypatch):
    """As for a role that may not create functions: the statement still runs, and a warning says why."""
    settings.DATABASE_SERVER_PREPARE = False
    statement_functions._made.clear()
    monkeypatch.setattr(statement_functions, "_definition", lambda *args: "CREATE FUNCTION (")
    with caplog.at_level("WARNING", logger="core.statement_functions"):
        assert execute_prepared("SELECT %(x)s::int AS v", {"x": 7}) == [(7,)]
        assert execute_prepared("SELECT %(x)s::int AS v", {"x": 8}) == [(8,)]
    (warning,) = caplog.records  # once per statement and process
    assert "syntax error" in warning.error
    assert not [body for body in stmt_functions() if "AS v" in body]


@pytest.mark.django_db(transaction=True)
def test_a_statement_without_rows_and_one_dropped_under_the_process(settings):
    settings.DATABASE_SERVER_PREPARE = False
    statement_functions._made.clear()
    sql = "UPDATE core_ratelimit SET tat = tat WHERE key = %(key)s"
    assert execute_prepared(sql, {"key": "nothing"}) == []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT format('DROP FUNCTION %%s', oid::regprocedure) FROM pg_proc WHERE prosrc LIKE %s",
            ["%core_ratelimit SET tat=tat%"],
        )
        (drop,) = cursor.fetchone()
        cursor.execute(drop)
    with pytest.raises(ProgrammingError):
        execute_prepared(sql, {"key": "nothing"})
    assert execute_prepared(sql, {"key": "nothing"}) == []  # made again


@pytest.mark.django_db(transaction=True)
def test_processes_racing_to_make_one_function_both_run_it(settings):
    import threading

    settings.DATABASE_SERVER_PREPARE = False
    statement_functions._made.clear()
    sql = "SELECT %(n)s::int + 1 AS racing"
    start, results = threading.Barrier(4), []

    def run(n):
        try:
            start.wait(10)
            statement_functions._made.clear()
            results.append(execute_prepared(sql, {"n": n}))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [[(1,)], [(2,)], [(3,)], [(4,)]]
    assert len([b for b in stmt_functions() if "racing" in b]) == 1


@pytest.mark.django_db(transaction=True)
def test_a_function_not_made_while_the_database_is_unreachable_is_made_later(settings, monkeypatch):
    settings.DATABASE_SERVER_PREPARE = False
    statement_functions._made.clear()
    real_connect = statement_functions.psycopg.connect

    def unreachable(*args, **kwargs):
        raise statement_functions.psycopg.OperationalError("connection refused")

    sql = "SELECT %(n)s::int * 2 AS later"
    connection.ensure_connection()  # only the function's own connection fails
    monkeypatch.setattr(statement_functions.psycopg, "connect", unreachable)
    assert execute_prepared(sql, {"n": 2}) == [(4,)]  # sent as text meanwhile
    monkeypatch.setattr(statement_functions.psycopg, "connect", real_connect)
    assert execute_prepared(sql, {"n": 3}) == [(6,)]
    assert [body for body in stmt_functions() if "later" in body]
