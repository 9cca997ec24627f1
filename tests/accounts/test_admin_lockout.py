"""Admin login: locked per username and address after repeated failures, throttled like the token endpoint, unlockable by staff."""

import pytest
from axes.models import AccessAttempt
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.test import Client

from tests.factories import DEFAULT_PASSWORD, StaffUserFactory

pytestmark = pytest.mark.django_db


def admin_login(client: Client, username: str, password: str = DEFAULT_PASSWORD):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


@pytest.fixture
def real_auth_rate(settings):
    settings.THROTTLE_AUTH_RATE = "10/minute"  # the production default
    return settings


def test_five_failures_lock_the_username_from_that_address(settings):
    StaffUserFactory(username="ops")
    attacker = Client(REMOTE_ADDR="203.0.113.66")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert admin_login(attacker, "ops", "wrong").status_code == 200  # the form again, with its error
    assert admin_login(attacker, "ops", "wrong").status_code == 429  # the failure that reaches the limit

    locked = admin_login(attacker, "ops")  # even the right password
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert "Login locked" in locked.content.decode()
    # The same person from their usual address is not locked out by someone else's guessing.
    assert logged_in(admin_login(Client(REMOTE_ADDR="198.51.100.7"), "ops"))


def test_a_success_before_the_limit_resets_the_count(settings):
    StaffUserFactory(username="ops")
    client = Client(REMOTE_ADDR="203.0.113.1")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        admin_login(client, "ops", "wrong")
    assert logged_in(admin_login(client, "ops"))
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        admin_login(client, "ops", "wrong")
    assert logged_in(admin_login(client, "ops"))


def test_brute_force_on_the_admin_login_is_stopped_while_another_user_logs_in(real_auth_rate, settings):
    StaffUserFactory(username="victim")
    StaffUserFactory(username="colleague")
    attacker = Client(REMOTE_ADDR="203.0.113.66")
    statuses = []
    for attempt in range(200):
        statuses.append(admin_login(attacker, "victim", f"guess-{attempt}").status_code)
        if attempt % 25 == 0:
            colleague = Client(REMOTE_ADDR="198.51.100.7")
            assert logged_in(admin_login(colleague, "colleague"))

    limit = settings.AXES_FAILURE_LIMIT
    # Wrong password: the form again; from the failure that reaches the limit on, locked out (axes),
    # and past THROTTLE_AUTH_RATE throttled too: 195 of 200 guesses never reach a password check.
    assert statuses[: limit - 1] == [200] * (limit - 1)
    assert set(statuses[limit - 1 :]) == {429}
    assert AccessAttempt.objects.get(username="victim").failures_since_start >= limit
    # Spraying other usernames from the same address is throttled as well.
    assert admin_login(attacker, "someone-else", "wrong").status_code == 429


def test_staff_unlock_from_the_user_admin(settings, admin_client, admin_user):
    locked_user = StaffUserFactory(username="ops")
    client = Client(REMOTE_ADDR="203.0.113.5")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        admin_login(client, "ops", "wrong")
    assert admin_login(client, "ops").status_code == 429

    response = admin_client.post(
        "/admin/accounts/user/",
        {"action": "unlock_admin_login", "_selected_action": [locked_user.pk]},
        follow=True,
    )
    assert "Unlocked admin login for 1 user(s)." in response.content.decode()
    assert LogEntry.objects.filter(object_id=str(locked_user.pk), user=admin_user).exists()
    assert logged_in(admin_login(client, "ops"))


def test_staff_unlock_from_the_command_line(settings):
    StaffUserFactory(username="ops")
    client = Client(REMOTE_ADDR="203.0.113.5")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        admin_login(client, "ops", "wrong")
    assert admin_login(client, "ops").status_code == 429

    call_command("axes_reset_username", "ops")

    assert logged_in(admin_login(client, "ops"))


def test_failed_attempts_keep_no_password(settings, admin_client):
    StaffUserFactory(username="ops")
    admin_login(Client(REMOTE_ADDR="203.0.113.5"), "ops", "hunter2-typed-wrong")
    attempt = AccessAttempt.objects.get(username="ops")
    assert "hunter2-typed-wrong" not in attempt.post_data
    page = admin_client.get(f"/admin/axes/accessattempt/{attempt.pk}/change/")
    assert page.status_code == 200
    assert "hunter2-typed-wrong" not in page.content.decode()


def test_the_api_token_endpoint_is_throttled_not_locked(settings):
    """API clients get 429 with Retry-After from the throttles; axes guards the two sign-in forms only."""
    StaffUserFactory(username="ops")
    from rest_framework.test import APIClient

    client = APIClient(REMOTE_ADDR="203.0.113.8")
    for _ in range(settings.AXES_FAILURE_LIMIT + 2):
        client.post("/api/v1/auth/token", {"username": "ops", "password": "wrong"}, format="json")
    response = client.post(
        "/api/v1/auth/token", {"username": "ops", "password": DEFAULT_PASSWORD}, format="json"
    )
    assert response.status_code == 200


def web_signin(client: Client, username: str, password: str = DEFAULT_PASSWORD):
    return client.post("/signin/", {"username": username, "password": password})


def test_a_lock_from_the_admin_login_holds_on_the_sign_in_page_too(settings):
    """Both forms open a session the admin accepts: a lock one of them could walk around is no lock."""
    StaffUserFactory(username="ops")
    attacker = Client(REMOTE_ADDR="203.0.113.66")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        admin_login(attacker, "ops", "wrong")

    locked = web_signin(attacker, "ops")  # the right password, through the other door

    assert locked.status_code == 429
    assert "Too many failed sign-ins for this username" in locked.content.decode()
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert attacker.get("/admin/").status_code == 302  # no session was opened
    assert web_signin(Client(REMOTE_ADDR="198.51.100.7"), "ops").status_code == 302  # their own address


def test_failures_on_the_sign_in_page_count_toward_the_lock(settings):
    StaffUserFactory(username="ops")
    attacker = Client(REMOTE_ADDR="203.0.113.66")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert web_signin(attacker, "ops", "wrong").status_code == 200  # the form again, with its error
    assert web_signin(attacker, "ops", "wrong").status_code == 429

    assert admin_login(attacker, "ops").status_code == 429
    assert web_signin(attacker, "ops").status_code == 429


@pytest.mark.parametrize(
    ("forwarded", "counted_as"),
    [
        ("203.0.113.9:51234", "203.0.113.9"),  # a proxy that appends the client's port
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("not-an-address", "10.9.9.9"),  # junk: the proxy's own address, the one REMOTE_ADDR gives
    ],
)
def test_a_forwarded_address_with_a_port_or_none_at_all_signs_in_and_counts_by_its_address(
    settings, forwarded, counted_as
):
    """The lockout stores the client's address in an `inet` column: a hop written as `ip:port` (some
    cloud load balancers) or as junk was a 500 on every sign-in behind a trusted proxy."""
    settings.TRUSTED_PROXY_COUNT = 1
    StaffUserFactory(username="ops")
    behind_proxy = Client(REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR=forwarded)

    assert web_signin(behind_proxy, "ops", "wrong").status_code == 200  # the form again, with its error
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == [counted_as]
    assert logged_in(admin_login(behind_proxy, "ops"))
