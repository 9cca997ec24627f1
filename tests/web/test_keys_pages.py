"""The user's API keys page and the wallet's spending cap: the same services as the API, owner-only, CSRF, no double submit."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from accounts import keys
from accounts.models import ApiKey
from billing import services
from billing.models import SpendLimit
from billing.periods import local_today
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def new_key_form(**fields) -> dict:
    return {
        "name": "laptop",
        "limit": "",
        "limit_reset": "",
        "expires_on": "",
        "submission": "s" * 32,
        **fields,
    }


def create_key(user, **fields):
    return keys.create_api_key(user=user, name=fields.pop("name", "k"), **fields)


# --- Signed out, CSRF ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/keys/", "/keys/1/", "/keys/1/revoke/"])
def test_a_signed_out_visitor_is_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/signin/?next=")


def test_a_signed_out_post_creates_nothing(client):
    assert client.post("/keys/", new_key_form()).status_code == 302
    assert client.post("/cap/", {"spend_cap": "5", "spend_cap_period": "day"}).status_code == 302
    assert not ApiKey.objects.exists() and not SpendLimit.objects.exists()


def test_key_and_cap_forms_need_their_csrf_token(user):
    key, _ = create_key(user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/keys/", new_key_form(name="other")).status_code == 403
    assert client.post(f"/keys/{key.pk}/", {"name": "renamed"}).status_code == 403
    assert client.post(f"/keys/{key.pk}/revoke/").status_code == 403
    assert client.post("/cap/", {"spend_cap": "5", "spend_cap_period": "day"}).status_code == 403
    key.refresh_from_db()
    assert ApiKey.objects.count() == 1 and key.name == "k" and key.revoked_at is None
    assert not SpendLimit.objects.filter(kind="user_cap").exists()


# --- Creating a key: the secret shown once ----------------------------------------------------------


def test_create_shows_the_secret_once_and_stores_only_its_digest(web, user):
    tomorrow = local_today() + timedelta(days=1)
    response = web.post(
        "/keys/", new_key_form(limit="25.5", limit_reset="monthly", expires_on=tomorrow.isoformat())
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = response.context["secret"]
    body = response.content.decode()
    assert secret.startswith("cdk_") and f'value="{secret}"' in body
    assert "You will not see this key again" in body
    key = ApiKey.objects.get(user=user)
    assert key.digest == keys.digest(secret) and secret not in (key.prefix, key.digest)
    assert key.spend_limit.amount == Decimal("25.5") and key.spend_limit.period == "month"
    assert key.expires_at > timezone.now() + timedelta(hours=23)
    assert keys.key_for_secret(secret) == key  # it works on the gateway
    listing = web.get("/keys/").content.decode()
    assert secret not in listing and key.prefix in listing and "laptop" in listing
    # The day chosen, as chosen (was shown as the next day's 00:00), here and on the new key's page.
    chosen = f"end of {tomorrow:%Y-%m-%d}"
    assert chosen in listing and chosen in body


def test_a_resent_create_form_makes_no_second_key(web, user):
    first = web.post("/keys/", new_key_form())
    assert first.status_code == 200
    again = web.post("/keys/", new_key_form(), follow=True)
    assert ApiKey.objects.filter(user=user).count() == 1
    body = again.content.decode()
    assert "already sent" in body and first.context["secret"] not in body


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"name": ""}, "name", "required"),
        ({"name": "x" * 101}, "name", "at most 100"),
        ({"limit": "abc"}, "limit", "number"),
        ({"limit": "-1"}, "limit", ""),
        ({"limit": "2000000000"}, "limit", "1000000000"),
        ({"limit_reset": "hourly"}, "limit_reset", "valid choice"),
        ({"expires_on": "2001-01-01"}, "expires_on", "in the past"),
        ({"expires_on": "soon"}, "expires_on", "valid date"),
        ({"expires_on": "9999-12-31"}, "expires_on", "Choose a day before 9999-01-01"),  # was a 500
    ],
)
def test_a_bad_key_form_shows_the_field_error_keeps_the_input_and_writes_nothing(web, fields, field, words):
    response = web.post("/keys/", new_key_form(**{"name": "keep me", **fields}))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors and words in " ".join(errors[field])
    if field != "name":
        assert 'value="keep me"' in response.content.decode()
    assert not ApiKey.objects.exists() and not SpendLimit.objects.exists()


def test_a_refused_form_can_be_sent_again_once_corrected(web, user):
    assert web.post("/keys/", new_key_form(limit="abc")).status_code == 200
    response = web.post("/keys/", new_key_form(limit="3"))
    assert response.status_code == 200 and "secret" in response.context
    assert ApiKey.objects.filter(user=user).count() == 1


def test_a_form_that_failed_on_our_side_can_be_sent_again(web, user, monkeypatch):
    """A failure of ours (a 500) made nothing: its token stayed claimed and the resend said "already created"."""
    real = keys.create_api_key

    def failing(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(keys, "create_api_key", failing)
    with pytest.raises(RuntimeError):
        web.post("/keys/", new_key_form())
    monkeypatch.setattr(keys, "create_api_key", real)

    response = web.post("/keys/", new_key_form())  # the same form, resent
    assert response.status_code == 200 and "secret" in response.context
    assert ApiKey.objects.filter(user=user).count() == 1


# --- The list, editing, revoking ---------------------------------------------------------------------


def test_the_list_shows_each_live_keys_limit_usage_and_remaining(web, user):
    limited, _ = create_key(user, name="limited", limit=Decimal("10"), limit_reset="daily")
    SpendLimit.objects.filter(pk=limited.spend_limit_id).update(
        spent=Decimal("4"), period_start=local_today()
    )
    create_key(user, name="open")
    gone, _ = create_key(user, name="gone")
    keys.revoke_api_key(key=gone)
    response = web.get("/keys/")
    states = {state.key.name: state for state in response.context["states"]}
    assert set(states) == {"limited", "open"}  # revoked keys are not listed, as on the API
    assert states["limited"].usage == Decimal("4") and states["limited"].limit_remaining == Decimal("6")
    assert states["open"].limit is None and states["open"].limit_remaining is None
    body = response.content.decode()
    assert "6.000000" in body and "daily" in body and f"/keys/{limited.pk}/revoke/" in body


def test_an_expired_key_is_marked_expired_and_can_still_be_revoked(web, user):
    expired, secret = create_key(user, name="old-key", expires_at=timezone.now() + timedelta(days=1))
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=3))
    working, _ = create_key(user, name="new-key", expires_at=timezone.now() + timedelta(days=1))

    body = web.get("/keys/").content.decode()

    def row(key):
        return re.search(rf'<tr id="key-{key.pk}"[^>]*>.*?</tr>', body, re.S).group(0)

    assert "Expired" in row(expired) and 'class="expired"' in row(expired)
    assert f"/keys/{expired.pk}/revoke/" in row(expired) and f'href="/keys/{expired.pk}/"' not in row(expired)
    assert "Expired" not in row(working) and f'href="/keys/{working.pk}/"' in row(working)
    assert web.get("/v1/key", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401  # as the page says
    web.post(f"/keys/{expired.pk}/revoke/")
    assert f'id="key-{expired.pk}"' not in web.get("/keys/").content.decode()


def test_edit_renames_and_relimits_through_the_keys_service(web, user):
    key, _ = create_key(user, name="old", limit=Decimal("5"), limit_reset="daily")
    page = web.get(f"/keys/{key.pk}/")
    assert page.status_code == 200 and page.context["form"].initial["limit"] == "5"
    response = web.post(f"/keys/{key.pk}/", {"name": "new", "limit": "", "limit_reset": ""})
    assert response.status_code == 302 and response["Location"] == "/keys/"
    key.refresh_from_db()
    key.spend_limit.refresh_from_db()
    assert key.name == "new" and key.spend_limit.amount is None and key.spend_limit.period is None


def test_a_bad_edit_keeps_the_input_and_changes_nothing(web, user):
    key, _ = create_key(user, name="old", limit=Decimal("5"))
    response = web.post(f"/keys/{key.pk}/", {"name": "typed", "limit": "1.0000001", "limit_reset": ""})
    assert response.status_code == 200
    assert response.context["form"].errors["limit"]
    assert 'value="typed"' in response.content.decode()
    key.refresh_from_db()
    assert key.name == "old" and key.spend_limit.amount == Decimal("5")


def test_revoke_asks_first_then_the_key_stops_working(web, user):
    key, secret = create_key(user, name="doomed")
    confirm = web.get(f"/keys/{key.pk}/revoke/")
    assert confirm.status_code == 200 and "Revoke this key" in confirm.content.decode()
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None  # asking revokes nothing
    response = web.post(f"/keys/{key.pk}/revoke/", follow=True)
    assert "Revoked the key doomed" in response.content.decode()
    assert keys.key_for_secret(secret) is None
    assert web.post(f"/keys/{key.pk}/revoke/").status_code == 404  # gone from the user's pages


def test_another_users_key_is_not_found_and_untouched(web):
    theirs, secret = create_key(UserFactory(), name="theirs", limit=Decimal("1"))
    for path in (f"/keys/{theirs.pk}/", f"/keys/{theirs.pk}/revoke/"):
        assert web.get(path).status_code == 404
    assert web.post(f"/keys/{theirs.pk}/", {"name": "mine now", "limit": ""}).status_code == 404
    assert web.post(f"/keys/{theirs.pk}/revoke/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.name == "theirs" and theirs.revoked_at is None and keys.key_for_secret(secret) == theirs
    assert "theirs" not in web.get("/keys/").content.decode()


# --- The spending cap on the wallet page ---------------------------------------------------------------


def test_set_change_and_remove_the_users_own_cap(web, user):
    response = web.post("/cap/", {"spend_cap": "30", "spend_cap_period": "week"})
    assert response.status_code == 302 and response["Location"] == "/#spend-cap"
    cap = SpendLimit.objects.get(wallet__user=user, kind="user_cap")
    assert cap.amount == Decimal("30") and cap.period == "week"
    page = web.get("/")
    assert page.context["caps"].spend_cap.amount == Decimal("30")
    assert page.context["cap_form"].initial == {"spend_cap": "30", "spend_cap_period": "week"}
    assert "Remove my cap" in page.content.decode()
    web.post("/cap/", {"spend_cap": "12.5", "spend_cap_period": "day"})
    cap.refresh_from_db()
    assert cap.amount == Decimal("12.5") and cap.period == "day"
    web.post("/cap/", {"remove": "1"})
    assert not SpendLimit.objects.filter(kind="user_cap").exists()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"spend_cap": "", "spend_cap_period": "day"}, "spend_cap"),
        ({"spend_cap": "lots", "spend_cap_period": "day"}, "spend_cap"),
        ({"spend_cap": "-5", "spend_cap_period": "day"}, "spend_cap"),
        ({"spend_cap": "5", "spend_cap_period": "year"}, "spend_cap_period"),
    ],
)
def test_a_bad_cap_is_a_field_error_on_the_wallet_page_and_writes_nothing(web, data, field):
    response = web.post("/cap/", data)
    assert response.status_code == 200
    assert response.context["cap_form"].errors[field]
    if data["spend_cap"]:
        assert f'value="{data["spend_cap"]}"' in response.content.decode()
    assert response.context["state"] is not None  # the whole wallet page, with the error
    assert not SpendLimit.objects.exists()


def test_a_staff_cap_is_shown_as_such_and_the_users_form_never_changes_it(web, user):
    services.set_spend_cap(user=user, kind="staff_cap", amount=Decimal("8"), period="month")
    body = web.get("/").content.decode()
    assert 'id="staff-cap"' in body and "you cannot raise or remove it" in body
    web.post("/cap/", {"spend_cap": "500", "spend_cap_period": "month"})
    web.post("/cap/", {"remove": "1"})
    staff_cap = SpendLimit.objects.get(kind="staff_cap")
    assert staff_cap.amount == Decimal("8")


# --- The content security policy ----------------------------------------------------------------------


def test_key_pages_carry_no_inline_script_or_style(web, user):
    key, _ = create_key(user)
    pages = [web.get("/keys/"), web.get(f"/keys/{key.pk}/"), web.get(f"/keys/{key.pk}/revoke/")]
    pages.append(web.post("/keys/", new_key_form()))
    for response in pages:
        body = response.content.decode()
        assert "<script>" not in body and " style=" not in body and "<style" not in body
        assert "script-src 'self'" in response["Content-Security-Policy"]
