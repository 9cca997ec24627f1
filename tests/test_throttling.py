"""Throttles at the rates a deployment keeps: auth and sign-up per address and username, turns per user, staff writes."""

import os
import subprocess
import sys
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import CreditTransaction
from billing.services import grant
from core.models import RateLimit
from core.ratelimits import Hit, parse_rate, prune, rate_store
from sessions_app.selectors import counted_turn_context
from tests.database import in_its_own_transaction, synchronous_commit
from tests.factories import (
    DEFAULT_PASSWORD,
    ChatSessionFactory,
    StaffUserFactory,
    UserFactory,
    fund,
    token_client_for,
)
from tests.live_server import ROOT, database_url
from tests.sessions_app.test_turns_api import TURN_QUERIES

pytestmark = pytest.mark.django_db

# The production defaults (config/settings.py); conftest relaxes them for every other test.
DEFAULTS = {
    "THROTTLE_AUTH_RATE": "10/minute",
    "THROTTLE_SIGNUP_RATE": "10/hour",
    "THROTTLE_TURN_RATE": "60/minute",
    "THROTTLE_STAFF_RATE": "60/minute",
}


@pytest.fixture
def real_rates(settings):
    for name, rate in DEFAULTS.items():
        setattr(settings, name, rate)
    return settings


def client_from(address: str, **extra) -> APIClient:
    return APIClient(REMOTE_ADDR=address, **extra)


def login(client, username, password=DEFAULT_PASSWORD):
    return client.post("/api/v1/auth/token", {"username": username, "password": password}, format="json")


def assert_throttled(response):
    assert response.status_code == 429, response.content
    wait = int(response["Retry-After"])
    assert 1 <= wait <= 3600
    body = response.json()
    assert body == {
        "detail": f"Too many requests; try again in {wait} second{'s' if wait != 1 else ''}.",
        "code": "throttled",
        "retry_after": wait,
    }


def test_settings_defaults_are_the_documented_ones():
    from config import settings as module

    source = open(module.__file__).read()
    for name, rate in DEFAULTS.items():
        assert f'env.str("{name}", default="{rate}")' in source


def test_brute_force_on_the_token_endpoint_is_throttled_while_another_user_logs_in(real_rates):
    victim, bystander = UserFactory(username="victim"), UserFactory(username="bystander")
    attacker, colleague = client_from("203.0.113.66"), client_from("198.51.100.7")
    statuses = []
    for attempt in range(200):
        statuses.append(login(attacker, victim.username, f"guess-{attempt}").status_code)
        if attempt % 20 == 0:
            # Someone else, elsewhere, is unaffected throughout.
            assert login(colleague, bystander.username).status_code == 200

    first_429 = statuses.index(429)
    assert first_429 == 10  # THROTTLE_AUTH_RATE: 10 a minute
    assert set(statuses[:first_429]) == {400}
    assert set(statuses[first_429:]) == {429}
    # Even the right password is refused from the attacking address now...
    assert_throttled(login(attacker, victim.username))
    # ...and guessing from many addresses still counts against the username.
    assert login(client_from("192.0.2.1"), victim.username).status_code == 429


def test_username_throttle_counts_across_addresses(real_rates):
    UserFactory(username="target")
    for n in range(10):
        assert login(client_from(f"192.0.2.{n + 1}"), "target", "wrong").status_code == 400
    assert_throttled(login(client_from("192.0.2.200"), "target", "wrong"))
    # The username is compared case-insensitively, so case variants share the counter.
    assert login(client_from("192.0.2.201"), "TARGET", "wrong").status_code == 429


def test_address_throttle_counts_across_usernames(real_rates):
    client = client_from("203.0.113.9")
    for n in range(10):
        assert login(client, f"user-{n}", "wrong").status_code == 400
    assert_throttled(login(client, "someone-else", "wrong"))


def test_signup_is_throttled_per_address(real_rates):
    client = client_from("203.0.113.10")
    for n in range(10):
        body = {"username": f"new-{n}", "email": f"new-{n}@example.com", "password": "a-long-passphrase-1"}
        assert client.post("/api/v1/auth/register", body, format="json").status_code == 201
    body = {"username": "one-more", "email": "one@example.com", "password": "a-long-passphrase-1"}
    assert_throttled(client.post("/api/v1/auth/register", body, format="json"))
    # Another address may still sign up.
    assert client_from("198.51.100.1").post("/api/v1/auth/register", body, format="json").status_code == 201


def test_forwarded_address_is_used_only_behind_trusted_proxies(real_rates, settings):
    UserFactory(username="u")
    # No trusted proxy: a client's X-Forwarded-For is ignored, so rotating it does not help.
    for n in range(10):
        login(client_from("203.0.113.1", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}"), f"x{n}", "wrong")
    assert login(client_from("203.0.113.1", HTTP_X_FORWARDED_FOR="10.0.1.1"), "y", "wrong").status_code == 429

    # One trusted proxy: the address it appended is the client's (not what the client wrote before it).
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.1.1.1"
    for n in range(10):
        login(client_from(proxy, HTTP_X_FORWARDED_FOR=f"6.6.6.{n}, 203.0.113.50"), f"z{n}", "wrong")
    assert login(client_from(proxy, HTTP_X_FORWARDED_FOR="203.0.113.50"), "w", "wrong").status_code == 429
    assert login(client_from(proxy, HTTP_X_FORWARDED_FOR="203.0.113.51"), "w", "wrong").status_code == 400


@pytest.fixture
def funded_session(user):
    fund(user, "100")
    return ChatSessionFactory(owner=user)


def test_turns_are_throttled_per_user(settings, user, user_client, funded_session):
    settings.THROTTLE_TURN_RATE = "3/minute"
    url = f"/api/v1/sessions/{funded_session.pk}/turns/"
    for _ in range(3):
        assert user_client.post(url, {"content": "hi"}, format="json").status_code == 201
    response = user_client.post(url, {"content": "hi"}, format="json")
    assert_throttled(response)
    assert CreditTransaction.objects.filter(wallet__user=user, kind="debit").count() == 3
    # Reading is not counted; another user is not affected.
    assert user_client.get(url).status_code == 200
    other = UserFactory()
    grant(user=other, amount=Decimal("10"), reason="funds", initiated_by=StaffUserFactory())
    other_session = ChatSessionFactory(owner=other)
    client = APIClient()
    client.force_authenticate(other)
    assert (
        client.post(
            f"/api/v1/sessions/{other_session.pk}/turns/", {"content": "hi"}, format="json"
        ).status_code
        == 201
    )


def test_default_turn_rate_allows_a_chatty_user(real_rates, user, user_client, funded_session):
    url = f"/api/v1/sessions/{funded_session.pk}/turns/"
    statuses = [user_client.post(url, {"content": "hi"}, format="json").status_code for _ in range(61)]
    assert statuses[:60] == [201] * 60
    assert statuses[60] == 429


def test_staff_money_writes_are_throttled_per_staff_user(settings, user, staff_client):
    settings.THROTTLE_STAFF_RATE = "2/minute"
    url = f"/api/v1/admin/wallets/{user.pk}/grant"
    for _ in range(2):
        assert staff_client.post(url, {"amount": "1", "reason": "r"}, format="json").status_code == 200
    assert_throttled(staff_client.post(url, {"amount": "1", "reason": "r"}, format="json"))
    assert_throttled(staff_client.patch("/api/v1/admin/pricing/echo-1/", {"active": True}, format="json"))
    assert_throttled(
        staff_client.patch(f"/api/v1/admin/wallets/{user.pk}", {"enforcement": "exempt"}, format="json")
    )
    # Reads are not counted.
    assert staff_client.get(f"/api/v1/admin/wallets/{user.pk}").status_code == 200
    assert staff_client.get("/api/v1/admin/pricing/").status_code == 200
    # Another staff user has a budget of their own.
    colleague = APIClient()
    colleague.force_authenticate(StaffUserFactory())
    assert colleague.post(url, {"amount": "1", "reason": "r"}, format="json").status_code == 200
    assert CreditTransaction.objects.filter(wallet__user=user).count() == 3


def test_staff_throttle_class_is_reusable_for_new_money_endpoints():
    from billing.views_staff import StaffAPIView, StaffPricingDetailView, StaffPricingListView
    from core.throttling import StaffMoneyThrottle

    for view in (StaffAPIView, StaffPricingListView, StaffPricingDetailView):
        assert StaffMoneyThrottle in view.throttle_classes


@pytest.mark.django_db(transaction=True)
def test_counts_are_shared_by_processes(settings):
    """Two failed logins from one address in another process (its own connection), then a 429 here."""
    settings.THROTTLE_AUTH_RATE = "2/minute"
    code = (
        "import django; django.setup()\n"
        "from rest_framework.test import APIClient\n"
        "client = APIClient(REMOTE_ADDR='203.0.113.77')\n"
        "for _ in range(2):\n"
        "    r = client.post('/api/v1/auth/token', {'username': 'a', 'password': 'wrong'}, format='json')\n"
        "    assert r.status_code == 400 and b'password' in r.content.lower(), r.content\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",  # the test database and in-process settings
        "THROTTLE_AUTH_RATE": "2/minute",
        "ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": database_url(),
    }
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
    assert RateLimit.objects.filter(key__startswith="auth_ip:").count() == 1
    assert_throttled(login(client_from("203.0.113.77"), "a", "wrong"))
    assert login(client_from("203.0.113.78"), "a", "other").status_code == 429  # the username's count too


@pytest.mark.django_db(transaction=True)
def test_concurrent_hits_on_one_key_pass_the_limit_exactly():
    """Twenty threads, a connection each, race one key at 5/minute: five are allowed, whatever the order."""
    hit = Hit(key="test:race", rate=parse_rate("5/minute"))
    start = threading.Barrier(20)
    verdicts = []

    def race():
        try:
            start.wait()
            verdicts.append(rate_store().hit(hit).allowed)
        finally:
            connection.close()

    threads = [threading.Thread(target=race) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(verdicts) == [False] * 15 + [True] * 5


def test_a_turns_throttle_costs_no_statement_of_its_own(
    settings, user, user_client, funded_session, django_assert_num_queries
):
    """The turn's session read counts it: the turn makes no statement beyond its own, and the count is kept."""
    settings.THROTTLE_TURN_RATE = "60/minute"
    url = f"/api/v1/sessions/{funded_session.pk}/turns/"
    user_client.post(url, {"content": "warm"}, format="json")  # prices and the like read once per process
    token_client = token_client_for(user)
    with django_assert_num_queries(TURN_QUERIES):
        assert token_client.post(url, {"content": "hi"}, format="json").status_code == 201
    assert RateLimit.objects.get(key=f"turn:{user.pk}").tat > timezone.now()


def test_a_throttled_turn_writes_nothing_and_comes_before_the_404(
    settings, user, user_client, funded_session
):
    settings.THROTTLE_TURN_RATE = "1/minute"
    url = f"/api/v1/sessions/{funded_session.pk}/turns/"
    assert user_client.post(url, {"content": "hi"}, format="json").status_code == 201
    assert_throttled(user_client.post(url, {"content": "hi"}, format="json"))
    assert_throttled(user_client.post("/api/v1/sessions/999999/turns/", {"content": "hi"}, format="json"))
    assert CreditTransaction.objects.filter(wallet__user=user, kind="debit").count() == 1


def test_prune_removes_only_spent_keys(db):
    RateLimit.objects.create(key="spent", tat=timezone.now() - timedelta(seconds=1))
    RateLimit.objects.create(key="live", tat=timezone.now() + timedelta(seconds=30))
    assert prune() == 1
    assert list(RateLimit.objects.values_list("key", flat=True)) == ["live"]


def test_cache_url_selects_redis_or_the_database(monkeypatch):
    import environ

    env = environ.Env()
    monkeypatch.setenv("CACHE_URL", "redis://127.0.0.1:6379/0")
    assert env.cache_url("CACHE_URL")["LOCATION"] == "redis://127.0.0.1:6379/0"
    monkeypatch.setenv("CACHE_URL", "dbcache://creditdesk_cache")
    assert env.cache_url("CACHE_URL")["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"


def test_schema_documents_the_429s(api_client):
    schema = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]
    throttled = [
        paths["/api/v1/auth/token/"]["post"],
        paths["/api/v1/auth/register/"]["post"],
        paths["/api/v1/sessions/{session_pk}/turns/"]["post"],
        paths["/api/v1/admin/wallets/{user_id}/grant/"]["post"],
        paths["/api/v1/admin/pricing/"]["post"],
    ]
    for operation in throttled:
        assert "429" in operation["responses"], operation["operationId"]
        assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert "429" not in paths["/api/v1/sessions/{session_pk}/turns/"]["get"]["responses"]


@pytest.mark.django_db(transaction=True)
def test_a_hit_on_its_own_relaxes_only_its_own_commit():
    """The count is in an UNLOGGED table: its statement commits without the WAL flush, and only it."""
    hit = Hit(key="relaxed", rate=parse_rate("10/minute"))

    assert in_its_own_transaction(lambda: rate_store().hit(hit)) == "off"
    assert synchronous_commit() == "on"
    with transaction.atomic():  # a caller's transaction, which may move credits, keeps its flush
        assert rate_store().hit(hit).allowed
        assert synchronous_commit() == "on"


@pytest.mark.django_db(transaction=True)
def test_a_turns_session_read_on_its_own_relaxes_only_its_own_commit(user):
    """The turn's first statement (session, history, throttle) moves no credits: its commit is relaxed."""
    session = ChatSessionFactory(owner=user)
    hit = Hit(key=f"turn:{user.pk}", rate=parse_rate("10/minute"))

    def read():
        context, verdict = counted_turn_context(user=user, session_id=session.pk, rate_hit=hit)
        assert context.session == session and verdict.allowed

    assert in_its_own_transaction(read) == "off"
    assert synchronous_commit() == "on"
    with transaction.atomic():
        read()
        assert synchronous_commit() == "on"


@pytest.mark.parametrize(
    ("text", "limit", "seconds"),
    [("60/minute", 60, 60), ("10/hour", 10, 3600), ("1/s", 1, 1), ("5/day", 5, 86400), ("10/minut", 10, 60)],
)
def test_a_rate_is_a_count_per_second_minute_hour_or_day(text, limit, seconds):
    rate = parse_rate(text)
    assert (rate.limit, rate.period) == (limit, timedelta(seconds=seconds))
    assert parse_rate("") is None and parse_rate(None) is None


@pytest.mark.parametrize(
    "text", ["abc", "60", "0/minute", "-1/minute", "5/x", "5/", "five/minute", "/minute"]
)
def test_anything_else_is_refused_saying_what_a_rate_looks_like(text):
    with pytest.raises(ValueError, match=r"is not a rate: write <n>/<second\|minute\|hour\|day>"):
        parse_rate(text)


def test_the_check_names_every_throttle_rate_that_is_not_a_rate(settings):
    from core.checks import check_throttle_rates, throttle_rate_settings

    assert check_throttle_rates() == []  # the defaults, and an empty rate (no limit)
    assert {"THROTTLE_TURN_RATE", "THROTTLE_GATEWAY_RATE", "THROTTLE_PURCHASE_RATE"} <= set(
        throttle_rate_settings()
    )
    settings.THROTTLE_TURN_RATE = "60/minutes/extra"  # parses: "/extra" is part of the unit's word
    settings.THROTTLE_GATEWAY_RATE = "0/minute"
    settings.THROTTLE_PURCHASE_RATE = "twenty/hour"

    errors = check_throttle_rates()

    assert [(error.id, error.msg.split(":")[0]) for error in errors] == [
        ("core.E001", "THROTTLE_GATEWAY_RATE"),
        ("core.E001", "THROTTLE_PURCHASE_RATE"),
    ]


def test_raising_a_rate_lifts_a_wait_the_old_rate_set(db):
    """An operator raising THROTTLE_..._RATE to let a blocked user back in: it works at once, not in an hour."""
    slow, fast = parse_rate("2/hour"), parse_rate("1000/minute")
    key = "test:raised"
    assert [rate_store().hit(Hit(key=key, rate=slow)).allowed for _ in range(3)] == [True, True, False]
    refused = rate_store().hit(Hit(key=key, rate=slow))
    assert not refused.allowed and refused.wait > 1700  # half an hour: the old rate's next slot

    raised = rate_store().hit(Hit(key=key, rate=fast))

    assert raised.allowed or raised.wait <= fast.interval.total_seconds()
