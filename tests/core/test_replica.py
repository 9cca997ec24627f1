"""The read replica: which reads go there, which never do, and the fall back to the primary when it is down or lags.

The "replica" alias mirrors the test database (config/settings_test.py, TEST MIRROR): its own
connection to the same database, so rows must be committed to be seen there (transaction=True), and
the queries each alias runs are captured separately. Routing is on when DATABASE_REPLICA_URL is set.
"""

import logging
import socket

import pytest
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.test.utils import CaptureQueriesContext

from billing import services
from billing.models import CreditTransaction, ModelPrice
from core import replica
from tests.factories import ChatSessionFactory, ModelPriceFactory, fund

pytestmark = pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, replica.REPLICA])


@pytest.fixture(autouse=True)
def echo_price(db):
    """The default model's price (transaction=True flushes the one billing's data migration adds)."""
    return ModelPriceFactory(model="echo-1")


@pytest.fixture
def replica_on(settings):
    settings.DATABASE_REPLICA_URL = "postgres://mirror-of-the-test-database"
    settings.DATABASE_REPLICA_CHECK_SECONDS = 60
    replica.reset_replica_state()
    yield settings
    replica.reset_replica_state()


@pytest.fixture
def replica_down(replica_on):
    """The replica alias pointed at a port nobody listens on (the settings dict replaced, not edited:
    the mirror shares the primary's)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = connections[replica.REPLICA]
    conn.close()
    original = conn.settings_dict
    conn.settings_dict = {**original, "HOST": "127.0.0.1", "PORT": str(port)}
    yield replica_on
    conn.close()
    conn.settings_dict = original


class Captured:
    """The SQL each alias ran inside the block."""

    def __init__(self, aliases=(DEFAULT_DB_ALIAS, replica.REPLICA)):
        # Capturing connects: a replica that is down cannot be captured (nor can it answer).
        self.aliases = aliases

    def __enter__(self):
        self.contexts = {alias: CaptureQueriesContext(connections[alias]) for alias in self.aliases}
        for context in self.contexts.values():
            context.__enter__()
        return self

    def __exit__(self, *exc):
        for context in self.contexts.values():
            context.__exit__(*exc)

    def sql(self, alias: str) -> list[str]:
        return [q["sql"] for q in self.contexts[alias].captured_queries]

    def touching(self, alias: str, table: str) -> list[str]:
        return [sql for sql in self.sql(alias) if table in sql]


def _charged(user, amount="5"):
    """A funded user with one charged call: two ledger rows and a day of usage, committed."""
    fund(user, amount)
    price = ModelPrice.objects.get(model="echo-1")
    return services.charge(user=user, price=price, provider="echo", input_tokens=1000, output_tokens=1000)


def test_the_staff_usage_summary_reads_the_replica(replica_on, staff_client, user):
    _charged(user)
    with Captured() as captured:
        response = staff_client.get("/api/v1/admin/usage/summary?bucket=day")
    assert response.status_code == 200, response.content
    assert response.json()["total_calls"] == 1
    assert captured.touching("replica", "billing_usage")
    assert not captured.touching(DEFAULT_DB_ALIAS, "billing_usage")


def test_the_csv_export_reads_the_ledger_from_the_replica(replica_on, staff_client, user):
    _charged(user)
    with Captured() as captured:
        response = staff_client.get("/api/v1/admin/transactions/export.csv")
        body = b"".join(response.streaming_content).decode()
    assert response.status_code == 200
    assert body.count("\n") == 3  # the header, the grant, the debit
    assert captured.touching("replica", '"billing_credittransaction"')
    assert not captured.touching(DEFAULT_DB_ALIAS, '"billing_credittransaction"')


@pytest.mark.parametrize(
    ("path", "table"),
    [
        ("/admin/billing/credittransaction/", '"billing_credittransaction"'),
        ("/admin/billing/llmcallevent/", '"billing_llmcallevent"'),
    ],
)
def test_the_admin_history_changelists_read_the_replica(replica_on, user, path, table, client):
    from tests.factories import StaffUserFactory

    staff = StaffUserFactory(is_superuser=True)
    client.force_login(staff)
    _charged(user)
    with Captured() as captured:
        response = client.get(path)
    assert response.status_code == 200
    assert captured.touching("replica", table)
    assert not captured.touching(DEFAULT_DB_ALIAS, f"FROM {table}")


def test_a_turn_and_the_users_own_wallet_never_touch_the_replica(replica_on, user_client, user):
    """Authentication, the reservation, the charge, the idempotency lookup and the own wallet: primary only."""
    fund(user, "10")
    session = ChatSessionFactory(owner=user)
    with Captured() as captured:
        turn = user_client.post(
            f"/api/v1/sessions/{session.pk}/turns",
            {"content": "hello"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="turn-1",
        )
        wallet = user_client.get("/api/v1/users/me/wallet")
        usage = user_client.get("/api/v1/users/me/usage")
    assert turn.status_code == 201, turn.content
    assert wallet.json()["balance"] == turn.json()["balance_after"]  # the turn is seen at once
    assert usage.json()["total_calls"] == 1
    assert captured.sql("replica") == []


def test_no_read_inside_a_transaction_goes_to_the_replica(replica_on):
    with replica.using_replica():
        assert replica.read_alias() == replica.REPLICA
        with transaction.atomic():
            assert replica.read_alias() == DEFAULT_DB_ALIAS
    assert replica.read_alias() == DEFAULT_DB_ALIAS  # not opted in


def test_the_check_is_cached_and_costs_no_round_trip_per_request(replica_on, staff_client):
    with Captured() as captured:
        for _ in range(3):
            assert staff_client.get("/api/v1/admin/usage/summary").status_code == 200
    assert len(captured.touching("replica", "pg_is_in_recovery")) == 1


def test_a_down_replica_sends_the_reads_to_the_primary_and_logs_once(
    replica_down, staff_client, user, caplog
):
    _charged(user)
    replica_down.DATABASE_REPLICA_CHECK_SECONDS = 0  # check on every request: still one log line
    with caplog.at_level(logging.INFO, logger="core.replica"), Captured([DEFAULT_DB_ALIAS]) as captured:
        answers = [staff_client.get("/api/v1/admin/usage/summary?bucket=day") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[-1].json()["total_calls"] == 1
    assert len(captured.touching(DEFAULT_DB_ALIAS, "billing_usage")) >= 3
    assert connections[replica.REPLICA].connection is None
    warnings = [r for r in caplog.records if r.name == "core.replica" and r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["replica down: lag-tolerant reads go to the primary"]
    health = staff_client.get("/api/v1/health").json()
    assert health["replica"] == {
        "status": "down",
        "lag_seconds": None,
        "max_lag_seconds": 30.0,
        "reads": "primary",
    }


def test_a_replica_that_dies_between_checks_fails_no_request(replica_on, staff_client, user, caplog):
    """The cached state says ok; the replica's connection then fails: the read is run again on the primary."""
    _charged(user)
    assert staff_client.get("/api/v1/admin/usage/summary").status_code == 200
    assert replica.replica_state().usable
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = connections[replica.REPLICA]
    conn.close()
    original = conn.settings_dict
    conn.settings_dict = {**original, "HOST": "127.0.0.1", "PORT": str(port)}
    try:
        with caplog.at_level(logging.INFO, logger="core.replica"):
            response = staff_client.get("/api/v1/admin/usage/summary?bucket=day")
    finally:
        conn.close()
        conn.settings_dict = original
    assert response.status_code == 200
    assert response.json()["total_calls"] == 1
    assert replica.replica_state().state == "down"
    assert any(r.getMessage().startswith("replica down") for r in caplog.records)


def test_a_lagging_replica_sends_the_reads_to_the_primary(replica_on, staff_client, monkeypatch, caplog):
    monkeypatch.setattr(replica, "_lag_seconds", lambda: 120.0)
    with caplog.at_level(logging.INFO, logger="core.replica"), Captured() as captured:
        assert staff_client.get("/api/v1/admin/usage/summary").status_code == 200
    assert captured.touching(DEFAULT_DB_ALIAS, "billing_usage")
    assert not captured.touching("replica", "billing_usage")
    assert any(
        r.getMessage() == "replica lagging: lag-tolerant reads go to the primary" for r in caplog.records
    )
    health = staff_client.get("/api/v1/health").json()
    assert health["replica"] == {
        "status": "lagging",
        "lag_seconds": 120.0,
        "max_lag_seconds": 30.0,
        "reads": "primary",
    }


def test_a_replica_back_within_the_lag_is_used_again_and_says_so(
    replica_on, staff_client, monkeypatch, caplog
):
    lag = {"seconds": 120.0}
    monkeypatch.setattr(replica, "_lag_seconds", lambda: lag["seconds"])
    replica_on.DATABASE_REPLICA_CHECK_SECONDS = 0
    with caplog.at_level(logging.INFO, logger="core.replica"):
        assert replica.replica_or_primary() == DEFAULT_DB_ALIAS
        lag["seconds"] = 2.5
        assert replica.replica_or_primary() == replica.REPLICA
        assert replica.replica_or_primary() == replica.REPLICA
    messages = [r.getMessage() for r in caplog.records if r.name == "core.replica"]
    assert messages == [
        "replica lagging: lag-tolerant reads go to the primary",
        "replica usable: lag-tolerant reads go to the replica",
    ]


def test_health_reports_the_replicas_lag(replica_on, api_client):
    body = api_client.get("/api/v1/health").json()
    assert body["replica"] == {
        "status": "ok",
        "lag_seconds": 0.0,
        "max_lag_seconds": 30.0,
        "reads": "replica",
    }


def test_without_a_replica_url_every_read_stays_on_the_primary(staff_client, user):
    replica.reset_replica_state()
    _charged(user)
    with Captured() as captured:
        assert staff_client.get("/api/v1/admin/usage/summary").status_code == 200
        assert "replica" not in staff_client.get("/api/v1/health").json()
    assert captured.sql("replica") == []
    assert CreditTransaction.objects.count() == 2
