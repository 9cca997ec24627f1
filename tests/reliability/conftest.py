"""Fixtures for the campaign's live-server tests: the test database's URL, for gunicorn to share."""

import pytest

from tests.live_server import database_url


@pytest.fixture
def live_database_url(transactional_db) -> str:
    """The test database as a DATABASE_URL; transactional_db commits, so gunicorn sees the rows."""
    return database_url()
