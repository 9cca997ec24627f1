"""Deployment settings, headers, secrets kept out of logs and pages, and the audit trail of staff actions."""

import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.admin.models import LogEntry
from django.test import override_settings
from rest_framework.test import APIClient
from werkzeug import Response

from billing.models import CreditTransaction
from core.logging import JSONFormatter
from tests.factories import StaffUserFactory

ROOT = Path(__file__).resolve().parent.parent


def production_env(**extra) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "SECURE_", "SESSION_", "CSRF_", "DEBUG", "PYTEST"))
    }
    env.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="false",
        ALLOWED_HOSTS="credits.example.com",
        DJANGO_SETTINGS_MODULE="config.settings",
        **extra,
    )
    return env


@pytest.mark.slow
def test_check_deploy_is_clean_with_production_settings(tmp_path):
    # After collectstatic, as `make serve` runs it: before it, core.W001 says so. Into a folder of its
    # own, so the test neither needs nor leaves the checkout's staticfiles/.
    env = production_env(STATIC_ROOT=str(tmp_path / "static"))
    collected = subprocess.run(  # noqa: S603 - our manage.py
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collected.returncode == 0, collected.stderr
    result = subprocess.run(  # noqa: S603 - our manage.py
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stderr and "W0" not in result.stderr


@pytest.mark.slow
def test_production_defaults_redirect_to_https_and_mark_cookies_secure():
    code = (
        "from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, "
        "s.SECURE_PROXY_SSL_HEADER, s.CACHES['default']['BACKEND'])"
    )
    run = [sys.executable, "-c", f"import django; django.setup(); {code}"]
    result = subprocess.run(run, cwd=ROOT, env=production_env(), capture_output=True, text=True, timeout=120)  # noqa: S603
    assert result.stdout.split() == [
        "True",
        "True",
        "True",
        "31536000",
        "('HTTP_X_FORWARDED_PROTO',",
        "'https')",
        "django.core.cache.backends.db.DatabaseCache",
    ], result.stderr
    plain = subprocess.run(  # noqa: S603
        run,
        cwd=ROOT,
        env=production_env(SECURE_SSL_REDIRECT="false"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.stdout.split()[0] == "False"


@pytest.mark.django_db
@override_settings(SECURE_SSL_REDIRECT=True)
def test_plain_http_is_redirected_unless_the_proxy_says_https(client):
    response = client.get("/api/v1/auth/me", HTTP_HOST="testserver")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/api/v1/auth/me"
    behind_proxy = client.get("/api/v1/auth/me", HTTP_X_FORWARDED_PROTO="https")
    assert behind_proxy.status_code == 401
    assert behind_proxy["Strict-Transport-Security"].startswith("max-age=")
    # Load balancers probe health over plain HTTP.
    assert client.get("/api/v1/health").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/admin/login/", "/api/v1/docs/", "/api/v1/auth/me"])
def test_every_page_carries_csp_and_frame_options(client, settings, path):
    response = client.get(path)
    assert response["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_what_a_signed_in_caller_is_answered_is_never_cached(client, user):
    """A shared computer's Back button after signing out must not show the wallet: private, no-store."""
    from tests.factories import DEFAULT_PASSWORD, api_token

    assert (
        client.get("/api/v1/health").get("Cache-Control") is None
    )  # anonymous answers keep their own caching
    client.post("/signin/", {"username": user.username, "password": DEFAULT_PASSWORD})
    for path in ("/", "/buy/", "/api/v1/users/me/wallet"):
        assert client.get(path)["Cache-Control"] == "private, no-store", path
    token = client.__class__().get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    assert token.status_code == 200 and token["Cache-Control"] == "private, no-store"
    assert "no-store" in client.get("/keys/")["Cache-Control"]  # a view's own header stands


@pytest.mark.django_db
def test_docs_page_has_no_inline_script_and_loads_swagger_from_this_server(client):
    html = client.get("/api/v1/docs/").content.decode()
    assert "<script>" not in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn." not in html
    script = client.get("/api/v1/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")


# --- Secrets ------------------------------------------------------------------------------------

SECRET_KEY = "sk-django-" + secrets.token_hex(16)
LLM_API_KEY = "sk-llm-" + secrets.token_hex(16)
PASSWORD = "correct-horse-" + secrets.token_hex(8)
STAFF_PASSWORD = "staff-battery-" + secrets.token_hex(8)


def completion():
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "echo-1",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


@pytest.mark.django_db
def test_no_secret_reaches_a_log_line_an_error_body_or_an_admin_page(httpserver, caplog, client):
    """Register, log in (once wrongly), take turns (one failing upstream), grant, browse the admin: grep it all."""
    httpserver.expect_ordered_request("/v1/chat/completions", method="POST").respond_with_json(completion())
    httpserver.expect_ordered_request("/v1/chat/completions", method="POST").respond_with_response(
        Response(f'{{"error": "bad key {LLM_API_KEY}"}}', status=401, content_type="application/json")
    )
    caplog.set_level(logging.DEBUG)
    bodies = []
    with override_settings(
        SECRET_KEY=SECRET_KEY,
        LLM_PROVIDER="openai",
        LLM_BASE_URL=httpserver.url_for("/v1"),
        LLM_API_KEY=LLM_API_KEY,
        LLM_TIMEOUT_SECONDS=2,
    ):
        api = APIClient()
        register = api.post(
            "/api/v1/auth/register",
            {"username": "ada", "email": "ada@example.com", "password": PASSWORD},
            format="json",
        )
        first_key = register.json()["token"]
        wrong = api.post("/api/v1/auth/token", {"username": "ada", "password": PASSWORD + "x"}, format="json")
        # A password typed into the username field must not be echoed or logged either.
        misplaced = api.post("/api/v1/auth/token", {"username": PASSWORD, "password": "x"}, format="json")
        login = api.post("/api/v1/auth/token", {"username": "ada", "password": PASSWORD}, format="json")
        key = login.json()["token"]
        bodies += [wrong.content, misplaced.content]  # (register and login answer a token on purpose)

        staff = StaffUserFactory(username="support", password=STAFF_PASSWORD)
        staff_api = APIClient()
        staff_key = staff_api.post(
            "/api/v1/auth/token", {"username": "support", "password": STAFF_PASSWORD}, format="json"
        ).json()["token"]
        staff_api.credentials(HTTP_AUTHORIZATION=f"Token {staff_key}")
        ada_id = register.json()["id"]
        grant = staff_api.post(
            f"/api/v1/admin/wallets/{ada_id}/grant", {"amount": "5", "reason": "r"}, format="json"
        )
        assert grant.status_code == 200
        bodies.append(grant.content)

        api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        session = api.post("/api/v1/sessions/", {}, format="json").json()["id"]
        ok = api.post(f"/api/v1/sessions/{session}/turns/", {"content": "Capital of France?"}, format="json")
        assert ok.status_code == 201, ok.content
        failed = api.post(f"/api/v1/sessions/{session}/turns/", {"content": "Again?"}, format="json")
        assert failed.status_code >= 500
        bad_token = APIClient()
        bad_token.credentials(HTTP_AUTHORIZATION=f"Token {key}x")
        bodies += [ok.content, failed.content, bad_token.get("/api/v1/auth/me").content]

        admin = client
        assert admin.post(
            "/admin/login/", {"username": "support", "password": "nope" + STAFF_PASSWORD}
        ).status_code
        staff.is_superuser = True
        staff.save()
        admin.force_login(staff)
        pages = [
            "/admin/accounts/user/",
            f"/admin/accounts/user/{ada_id}/change/",
            f"/admin/accounts/user/{staff.pk}/change/",
            "/admin/knox/authtoken/",
            "/admin/axes/accessattempt/",
            "/admin/billing/llmcallevent/",
            "/admin/billing/credittransaction/",
            "/admin/admin/logentry/",
        ]
        for page in pages:
            response = admin.get(page)
            assert response.status_code in (200, 404), page
            bodies.append(response.content)
        for attempt in __import__("axes.models", fromlist=["AccessAttempt"]).AccessAttempt.objects.all():
            bodies.append(admin.get(f"/admin/axes/accessattempt/{attempt.pk}/change/").content)

    formatter = JSONFormatter()
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert "token issued" in logged and "credits granted" in logged  # the flow was logged
    everything = logged + "\n".join(body.decode() for body in bodies)
    for name, value in {
        "SECRET_KEY": SECRET_KEY,
        "LLM_API_KEY": LLM_API_KEY,
        "user password": PASSWORD,
        "staff password": STAFF_PASSWORD,
        "registered token": first_key,
        "login token": key,
        "staff token": staff_key,
    }.items():
        assert value not in everything, f"{name} leaked"


# --- Audit --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_api_writes_are_logged_with_the_staff_user(caplog, staff_client, staff_user, user):
    caplog.set_level(logging.INFO, logger="creditdesk.audit")
    staff_client.post(f"/api/v1/admin/wallets/{user.pk}/grant", {"amount": "2", "reason": "r"}, format="json")
    staff_client.patch("/api/v1/admin/pricing/echo-1/", {"input_price_per_1k": "0.9"}, format="json")
    staff_client.patch(f"/api/v1/admin/wallets/{user.pk}", {"enforcement": "enforced"}, format="json")
    staff_client.get(f"/api/v1/admin/wallets/{user.pk}")  # a read: not an action

    audit = [r for r in caplog.records if r.name == "creditdesk.audit"]
    assert [(r.method, r.path, r.status) for r in audit] == [
        ("POST", f"/api/v1/admin/wallets/{user.pk}/grant", 200),
        ("PATCH", "/api/v1/admin/pricing/echo-1/", 200),
        ("PATCH", f"/api/v1/admin/wallets/{user.pk}", 200),
    ]
    assert {(r.staff_user_id, r.staff_username) for r in audit} == {(staff_user.pk, staff_user.username)}
    assert CreditTransaction.objects.get(wallet__user=user).initiated_by == staff_user


@pytest.mark.django_db
def test_admin_price_changes_leave_a_log_entry(admin_client, admin_user):
    from billing.models import ModelPrice

    price = ModelPrice.objects.get(model="echo-1")
    response = admin_client.post(
        f"/admin/billing/modelprice/{price.pk}/change/",
        {"input_price_per_1k": "0.7", "output_price_per_1k": "0.8", "active": "on"},
    )
    assert response.status_code == 302, response.content[:500]
    entry = LogEntry.objects.get(object_id=str(price.pk))
    assert entry.user == admin_user


@pytest.mark.django_db
def test_staff_user_page_lists_the_money_actions_they_initiated(admin_client, user):
    from billing.services import grant

    agent = StaffUserFactory(username="agent")
    for n in range(3):
        grant(user=user, amount="1", reason=f"goodwill {n}", initiated_by=agent)
    page = admin_client.get(f"/admin/accounts/user/{agent.pk}/change/").content.decode()
    assert 'id="money-actions"' in page
    assert page.count("goodwill") == 3
    link = f"/admin/billing/credittransaction/?initiated_by__id__exact={agent.pk}"
    assert link in page
    listing = admin_client.get(link)
    assert listing.status_code == 200
    assert listing.content.decode().count("goodwill") == 3
    # A user who initiated nothing shows nothing.
    assert (
        'id="money-actions"'
        not in admin_client.get(f"/admin/accounts/user/{user.pk}/change/").content.decode()
    )
