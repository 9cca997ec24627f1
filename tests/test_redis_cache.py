"""CACHE_URL=redis://...: the settings pick Django's RedisCache, and throttle counters live in Redis."""

import os
import socket
import subprocess
import sys
import uuid

import pytest
from django.core.cache import caches
from django.test import override_settings
from rest_framework.test import APIClient

from core.models import RateLimit
from tests.factories import ChatSessionFactory, UserFactory, fund, token_client_for
from tests.live_server import ROOT
from tests.sessions_app.test_turns_api import TURN_QUERIES

REDIS = ("127.0.0.1", 6379)


def _redis_up() -> bool:
    try:
        socket.create_connection(REDIS, timeout=0.5).close()
    except OSError:
        return False
    return True


def _redis_cache() -> dict:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/15",
            "KEY_PREFIX": f"test-{uuid.uuid4().hex}",  # runs that share the server never share counters
        }
    }


needs_redis = pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379 (CI's machine runs one)")


def test_redis_cache_url_selects_djangos_redis_cache_with_no_options():
    """The settings as a deployment loads them: no MAX_ENTRIES (Redis's client would refuse it)."""
    env = {**os.environ, "CACHE_URL": "redis://127.0.0.1:6379/15", "SECRET_KEY": "x"}
    code = (
        "from django.conf import settings; import django; django.setup(); print(settings.CACHES['default'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == (
        "{'BACKEND': 'django.core.cache.backends.redis.RedisCache', 'LOCATION': 'redis://127.0.0.1:6379/15'}"
    )


@needs_redis
@pytest.mark.django_db
def test_throttle_counters_live_in_redis(settings):
    """Two failed logins from one address, then 429: counted in Redis (was a 500, no `redis` package)."""
    settings.THROTTLE_AUTH_RATE = "2/minute"
    with override_settings(CACHES=_redis_cache()):
        try:
            client = APIClient(REMOTE_ADDR="203.0.113.78")
            answers = [
                client.post("/api/v1/auth/token", {"username": "a", "password": "wrong"}, format="json")
                for _ in range(3)
            ]
            assert [a.status_code for a in answers] == [400, 400, 429]
            assert answers[2].json()["code"] == "throttled"
            assert caches["default"].__class__.__name__ == "RedisCache"
        finally:
            caches["default"].clear()


@needs_redis
@pytest.mark.django_db
def test_turns_are_throttled_in_redis_with_no_statement_of_their_own(settings, django_assert_num_queries):
    """With Redis as the cache a turn's count is one Redis call: the turn makes no statement beyond its own."""
    user = UserFactory()
    fund(user, "10")
    session = ChatSessionFactory(owner=user)
    client = token_client_for(user)
    url = f"/api/v1/sessions/{session.pk}/turns/"
    settings.THROTTLE_TURN_RATE = "2/minute"
    with override_settings(CACHES=_redis_cache()):
        try:
            assert client.post(url, {"content": "warm"}, format="json").status_code == 201
            with django_assert_num_queries(TURN_QUERIES):
                assert client.post(url, {"content": "hi"}, format="json").status_code == 201
            refused = client.post(url, {"content": "hi"}, format="json")
            assert refused.status_code == 429 and refused.json()["code"] == "throttled"
            assert not RateLimit.objects.exists()  # nothing counted in the database
        finally:
            caches["default"].clear()


@needs_redis
def test_raising_a_rate_lifts_a_wait_in_redis_too(settings):
    from core.ratelimits import Hit, parse_rate, rate_store

    with override_settings(CACHES=_redis_cache()):
        try:
            slow, fast = parse_rate("2/hour"), parse_rate("1000/minute")
            key = f"test:raised:{uuid.uuid4()}"
            assert [rate_store().hit(Hit(key=key, rate=slow)).allowed for _ in range(3)] == [
                True,
                True,
                False,
            ]
            raised = rate_store().hit(Hit(key=key, rate=fast))
            assert raised.allowed or raised.wait <= fast.interval.total_seconds()
        finally:
            caches["default"].clear()
