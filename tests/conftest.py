"""Shared fixtures."""

import os

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.factories import StaffUserFactory, UserFactory, client_for, token_client_for

# Buying credits: the Stripe double and signed events (tests/stripe_fixtures.py).
pytest_plugins = ["tests.stripe_fixtures"]

# pytest-django exported the test run's settings module (config.settings_test) before this file was
# read. The servers, workers and manage.py processes that tests start run the deployed settings, as in
# production, so they inherit config.settings, not the test run's TESTING.
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"


def pytest_report_header(config):
    from django.conf import settings

    db = settings.DATABASES["default"]
    return f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('HOST') or ''} {db['NAME']}"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Uploaded files go to a temporary folder per test, never the checkout's MEDIA_ROOT."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return settings.MEDIA_ROOT


THROTTLE_SETTINGS = (
    "THROTTLE_AUTH_RATE",
    "THROTTLE_SIGNUP_RATE",
    "THROTTLE_TURN_RATE",
    "THROTTLE_STAFF_RATE",
    "THROTTLE_PURCHASE_RATE",
)


@pytest.fixture(autouse=True)
def _throttles_out_of_the_way(settings):
    """Every test starts with empty throttle counters and rates no test reaches by accident.

    The throttles still run (and count) on every request; tests/test_throttling.py sets real rates.
    """
    cache.clear()
    for name in THROTTLE_SETTINGS:
        setattr(settings, name, "100000/minute")
    yield
    cache.clear()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def staff_user(db):
    return StaffUserFactory()


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def user_client(user):
    return client_for(user)


@pytest.fixture
def staff_client(staff_user):
    return client_for(staff_user)


@pytest.fixture
def token_client(user):
    """A client that authenticates like the frontend: `Authorization: Token <key>`."""
    return token_client_for(user)
