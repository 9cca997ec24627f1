"""The health check: a real database query, 503 when it fails, pending migrations reported."""

import pytest
from django.db import OperationalError, connection

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/health/"])
def test_health_is_ok_without_authentication(api_client, path):
    response = api_client.get(path)

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "pending_migrations": 0}


def test_health_ignores_a_bad_token(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Token nonsense")

    assert api_client.get("/api/v1/health").status_code == 200


def test_health_is_503_when_the_database_fails(api_client, monkeypatch, caplog):
    def unreachable(*args, **kwargs):
        raise OperationalError('connection to server at "db.internal" failed: password authentication failed')

    monkeypatch.setattr(connection, "cursor", unreachable)

    response = api_client.get("/api/v1/health")

    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"]) == ("error", "error")
    assert "db.internal" not in response.content.decode()
    assert any(r.message == "health check: database unreachable" for r in caplog.records)


def test_health_reports_pending_migrations(api_client, monkeypatch):
    from django.db.migrations.recorder import MigrationRecorder

    MigrationRecorder.Migration.objects.filter(app="sessions_app", name="0001_initial").delete()

    response = api_client.get("/api/v1/health")

    assert response.status_code == 200
    assert response.json()["pending_migrations"] >= 1


def test_health_builds_the_migration_graph_at_most_once_per_process(api_client, monkeypatch):
    # A load balancer polls every few seconds: reading every migration file per poll was the cost.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core import views

    views.migrations_on_disk.cache_clear()
    built = []
    real_loader = views.MigrationLoader
    monkeypatch.setattr(views, "MigrationLoader", lambda *a, **k: built.append(1) or real_loader(*a, **k))

    for _ in range(5):
        with CaptureQueriesContext(connection) as queries:
            response = api_client.get("/api/v1/health")
        assert response.json()["pending_migrations"] == 0

    assert len(built) == 1
    assert len(queries) == 2  # SELECT 1, and the applied migrations
