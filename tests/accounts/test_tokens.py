"""API tokens: stored as digests, expiring, revoked by logout, logout-all, the admin and a command."""

import importlib
import logging
from datetime import timedelta

import pytest
from django.apps import apps as global_apps
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.factories import DEFAULT_PASSWORD, UserFactory, api_token

pytestmark = pytest.mark.django_db


def token_for(user) -> str:
    response = APIClient().post(
        "/api/v1/auth/token", {"username": user.username, "password": DEFAULT_PASSWORD}, format="json"
    )
    assert response.status_code == 200
    return response.json()["token"]


def me(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/auth/me").status_code


def post_with(key: str, path: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.post(path)


def test_the_key_is_not_stored(user):
    key = token_for(user)
    row = AuthToken.objects.get(user=user)
    stored = " ".join(str(value) for value in AuthToken.objects.filter(user=user).values_list().get())
    assert key not in stored
    assert row.digest != key


def test_token_expires_after_the_ttl(user, settings):
    key = token_for(user)
    row = AuthToken.objects.get(user=user)
    ttl = (row.expiry - row.created).total_seconds()
    assert abs(ttl - settings.AUTH_TOKEN_TTL_HOURS * 3600) < 1
    assert me(key) == 200
    AuthToken.objects.filter(user=user).update(expiry=timezone.now() - timedelta(seconds=1))
    assert me(key) == 401
    assert not AuthToken.objects.filter(user=user).exists()  # an expired token is deleted when seen


def test_logout_revokes_only_the_token_used(user):
    phone, laptop = token_for(user), token_for(user)

    assert post_with(phone, "/api/v1/auth/logout").status_code == 204
    assert me(phone) == 401
    assert me(laptop) == 200


@pytest.mark.parametrize("path", ["/api/v1/auth/logout-all", "/api/v1/auth/logout-all/"])
def test_logout_all_revokes_every_token_of_the_user_only(user, path):
    phone, laptop = token_for(user), token_for(user)
    other = api_token(UserFactory())

    assert post_with(phone, path).status_code == 204
    assert (me(phone), me(laptop), me(other)) == (401, 401, 200)


def test_logout_needs_authentication(api_client):
    assert api_client.post("/api/v1/auth/logout").status_code == 401
    assert api_client.post("/api/v1/auth/logout-all").status_code == 401


def test_tokens_per_user_are_capped_oldest_first(user, settings):
    settings.AUTH_TOKEN_MAX_PER_USER = 3
    keys = [token_for(user) for _ in range(4)]
    assert AuthToken.objects.filter(user=user).count() == 3
    assert [me(key) for key in keys] == [401, 200, 200, 200]


def test_staff_revokes_a_users_tokens_from_the_admin(admin_client, admin_user, user):
    key = token_for(user)
    response = admin_client.post(
        "/admin/accounts/user/",
        {"action": "revoke_api_tokens", "_selected_action": [user.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Revoked 1 API token(s)" in response.content.decode()
    assert me(key) == 401
    entry = LogEntry.objects.get(object_id=str(user.pk))
    assert (entry.user, entry.get_change_message()) == (admin_user, "Revoked 1 API token(s)")


def test_admin_pages_show_tokens_without_their_keys(admin_client, user):
    key = token_for(user)
    pages = [
        f"/admin/accounts/user/{user.pk}/change/",
        "/admin/knox/authtoken/",
        f"/admin/knox/authtoken/{AuthToken.objects.get(user=user).pk}/change/",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert key not in response.content.decode()
        assert key[:15] not in response.content.decode()


def test_revoke_tokens_command(user):
    key = token_for(user)
    call_command("revoke_tokens", user.username)
    assert me(key) == 401


def revocations(caplog) -> list[tuple]:
    return [(r.user_id, r.revoked_by) for r in caplog.records if r.getMessage() == "all tokens revoked"]


def test_the_log_says_who_revoked_a_users_tokens(admin_client, admin_user, user, caplog):
    """An operator's `revoke_tokens` logged the user's own id as revoked_by: it read as their own logout."""
    caplog.set_level(logging.INFO, logger="accounts.services")

    call_command("revoke_tokens", user.username)  # an operator at the shell: no user did it
    admin_client.post("/admin/accounts/user/", {"action": "revoke_api_tokens", "_selected_action": [user.pk]})
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    assert client.post("/api/v1/auth/logout-all").status_code == 204

    assert revocations(caplog) == [(user.pk, None), (user.pk, admin_user.pk), (user.pk, user.pk)]


def test_purge_expired_tokens_command(user):
    live = token_for(user)
    api_token(UserFactory())
    AuthToken.objects.exclude(user=user).update(expiry=timezone.now() - timedelta(days=1))
    call_command("purge_expired_tokens")
    assert list(AuthToken.objects.values_list("user", flat=True)) == [user.pk]
    assert me(live) == 200


def test_clear_text_drf_tokens_are_migrated_as_digests(user, settings):
    """A DRF authtoken key keeps working after the upgrade, until the TTL; its clear-text table is gone."""
    legacy_key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id bigint NOT NULL, "
            "created timestamptz NOT NULL)"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, now())", [legacy_key, user.pk])
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES ('authtoken', '0001_initial', now())"
        )
    migration = importlib.import_module("accounts.migrations.0003_drf_tokens_to_knox")

    with connection.schema_editor() as editor:
        migration.move_legacy_tokens(global_apps, editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM django_migrations WHERE app = 'authtoken'")
        assert cursor.fetchone()[0] == 0
    assert me(legacy_key) == 200
    row = AuthToken.objects.get(user=user)
    assert legacy_key not in (row.digest, row.token_key)
    assert row.expiry > timezone.now() + timedelta(hours=settings.AUTH_TOKEN_TTL_HOURS - 1)


def test_authentication_costs_one_query(user, django_assert_num_queries):
    key = api_token(user)
    api_token(user)  # knox itself would also load (and sweep) the user's other tokens per request
    from accounts.authentication import TokenAuthentication

    with django_assert_num_queries(1):
        authenticated, _ = TokenAuthentication().authenticate_credentials(key.encode())
    assert authenticated == user


@pytest.mark.parametrize("header", [b"Token \xe9\xe9\xe9", "Token abc\x00def", "Token " + "x" * 5000])
def test_a_token_that_cannot_be_one_is_refused_with_401(user, header):
    """Not UTF-8, a NUL (which PostgreSQL text cannot hold), or far too long: no token matches, 401."""
    api_token(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


def signed_in_browser(user):
    from django.test import Client

    browser = Client()
    assert (
        browser.post("/signin/", {"username": user.username, "password": DEFAULT_PASSWORD}).status_code == 302
    )
    assert browser.get("/").status_code == 200
    return browser


def test_logout_all_ends_the_users_browser_sessions_too(user):
    """Log out everywhere: a browser left signed in on another device ends with the tokens."""
    laptop, phone = signed_in_browser(user), signed_in_browser(user)
    theirs = signed_in_browser(UserFactory())

    assert post_with(token_for(user), "/api/v1/auth/logout-all").status_code == 204

    for browser in (laptop, phone):
        response = browser.get("/")
        assert response.status_code == 302 and response["Location"].startswith("/signin/")
    assert theirs.get("/").status_code == 200
    again = signed_in_browser(user)  # signing in again works, and stays signed in
    assert again.get("/").status_code == 200


def test_sessions_are_kept_until_logout_all(user, settings):
    """The generation is 0 until raised: sessions (and those signed with a SECRET_KEY_FALLBACKS key) hash as Django's."""
    from django.contrib.auth.base_user import AbstractBaseUser

    assert user.session_generation == 0
    assert user.get_session_auth_hash() == AbstractBaseUser.get_session_auth_hash(user)
    settings.SECRET_KEY_FALLBACKS = ["an-old-key"]
    assert list(user.get_session_auth_fallback_hash()) == list(
        AbstractBaseUser.get_session_auth_fallback_hash(user)
    )


def test_staff_revoking_a_users_tokens_ends_their_browser_sessions(admin_client, user):
    browser = signed_in_browser(user)

    admin_client.post("/admin/accounts/user/", {"action": "revoke_api_tokens", "_selected_action": [user.pk]})

    assert browser.get("/").status_code == 302
