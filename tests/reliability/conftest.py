"""Fixtures for the campaign's live-server tests: the test database's URL, for gunicorn to share."""

import pytest
from django.db import connection


@pytest.fixture
def live_database_url(transactional_db) -> str:
    """The test database as a DATABASE_URL; transactional_db commits, so gunicorn sees the rows."""
    params = connection.settings_dict
    credentials = params["USER"] + (f":{params['PASSWORD']}" if params.get("PASSWORD") else "")
    host = params.get("HOST") or "127.0.0.1"
    if host.startswith("/"):  # a unix socket folder (the embedded server listens on nothing else)
        return f"postgres://{credentials}@/{params['NAME']}?host={host}"
    return f"postgres://{credentials}@{host}:{params.get('PORT') or 5432}/{params['NAME']}"
