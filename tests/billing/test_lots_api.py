"""Lots over HTTP, the admin and the command line: grants with terms, bad terms refused on their field, lots in both wallet views."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing import services
from billing.models import CreditLot, CreditTransaction
from billing.reconcile import check_ledger

pytestmark = pytest.mark.django_db

D = Decimal


def grant_url(user_id):
    return f"/api/v1/admin/wallets/{user_id}/grant"


def test_staff_grant_with_terms_opens_a_lot_with_them(staff_client, user):
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    response = staff_client.post(
        grant_url(user.pk),
        {
            "amount": "12.5",
            "reason": "Sign-up bonus",
            "expires_at": expires.isoformat(),
            "priority": 20,
            "category": "promotional",
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    lot = CreditLot.objects.get(transaction_id=response.json()["transaction"]["id"])
    assert (lot.expires_at, lot.priority, lot.category, lot.remaining) == (
        expires,
        20,
        "promotional",
        D("12.5"),
    )
    assert check_ledger(user_id=user.pk).ok


def test_a_grant_replayed_after_its_expiry_passed_answers_the_first_grant(staff_client, user, monkeypatch):
    # API.md: a replay answers what the first request answered. Its expiry was ahead then; it was a 400
    # ("must be in the future") once it had passed.
    expires = (timezone.now() + timedelta(seconds=30)).replace(microsecond=0)
    body = {"amount": "3", "reason": "flash sale", "expires_at": expires.isoformat()}
    first = staff_client.post(grant_url(user.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="g-1")
    assert first.status_code == 200, first.json()
    later = timezone.now() + timedelta(minutes=5)
    monkeypatch.setattr(timezone, "now", lambda: later)
    again = staff_client.post(grant_url(user.pk), body, format="json", HTTP_IDEMPOTENCY_KEY="g-1")
    assert again.status_code == 200, again.json()
    assert again.json()["transaction"]["id"] == first.json()["transaction"]["id"]
    assert CreditLot.objects.filter(wallet__user=user).count() == 1
    # Without the key, or with a new one, a past expiry is refused as before.
    for extra in ({}, {"HTTP_IDEMPOTENCY_KEY": "g-2"}):
        refused = staff_client.post(grant_url(user.pk), body, format="json", **extra)
        assert refused.status_code == 400 and "in the future" in str(refused.json()["expires_at"])
    assert CreditLot.objects.filter(wallet__user=user).count() == 1


def test_a_key_reused_for_another_kind_says_so(staff_client, user):
    staff_client.post(
        grant_url(user.pk), {"amount": "3", "reason": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    response = staff_client.post(
        f"/api/v1/admin/wallets/{user.pk}/adjust",
        {"amount": "3", "reason": "x"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert response.status_code == 409
    assert "already used for a grant; send a new key for a new adjustment" in response.json()["detail"]


def test_staff_grant_without_terms_is_a_promotional_lot_that_never_expires(staff_client, user):
    response = staff_client.post(grant_url(user.pk), {"amount": "3", "reason": "x"}, format="json")
    assert response.status_code == 200
    lot = CreditLot.objects.get(wallet__user=user)
    assert (lot.expires_at, lot.priority, lot.category) == (None, 50, "promotional")


@pytest.mark.parametrize(
    ("terms", "field"),
    [
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "soon"}, "expires_at"),
        ({"expires_at": 1234}, "expires_at"),
        ({"expires_at": "2099-12-31"}, "expires_at"),  # a date alone is not a moment
        ({"expires_at": "2099-12-31T00:00:00Z\x00"}, "expires_at"),
        ({"expires_at": "2099-12-31T00:00:00Z junk"}, "expires_at"),
        ({"priority": 101}, "priority"),
        ({"priority": -1}, "priority"),
        ({"priority": "first"}, "priority"),
        ({"priority": 2.5}, "priority"),
        ({"category": "gold"}, "category"),
        ({"category": None}, "category"),
    ],
)
def test_staff_grant_refuses_bad_terms_with_400_on_the_field_and_writes_nothing(
    staff_client, user, terms, field
):
    response = staff_client.post(grant_url(user.pk), {"amount": "5", "reason": "x", **terms}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert response.json()[field][0]
    assert not CreditTransaction.objects.filter(wallet__user=user).exists()
    assert not CreditLot.objects.exists()


def test_both_wallet_views_list_live_lots_in_burn_order_with_the_next_expiry(
    staff_client, token_client, user, staff_user
):
    soon = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    services.grant(user=user, amount="4", reason="paid", initiated_by=staff_user, category="paid")
    services.grant(user=user, amount="2", reason="trial", initiated_by=staff_user, expires_at=soon)
    for body in (
        token_client.get("/api/v1/users/me/wallet").json(),
        staff_client.get(f"/api/v1/admin/wallets/{user.pk}").json(),
    ):
        assert [(lot["amount"], lot["category"], lot["remaining"]) for lot in body["lots"]] == [
            ("2.000000", "promotional", "2.000000"),
            ("4.000000", "paid", "4.000000"),
        ]
        assert body["lots"][0]["expires_at"] is not None and body["lots"][1]["expires_at"] is None
        assert set(body["lots"][0]) == {
            "id",
            "source",
            "category",
            "priority",
            "effective_at",
            "expires_at",
            "amount",
            "remaining",
        }
        assert body["next_expiry"]["amount"] == "2.000000"
        assert body["next_expiry"]["at"].startswith(soon.strftime("%Y-%m-%dT%H:%M:%S"))


def test_a_wallet_without_expiring_lots_has_no_next_expiry(token_client, user):
    body = token_client.get("/api/v1/users/me/wallet").json()
    assert body["lots"] == [] and body["next_expiry"] is None


def test_grant_credits_command_takes_lot_terms(user, staff_user):
    expires = (timezone.now() + timedelta(days=7)).replace(microsecond=0)
    out = StringIO()
    call_command(
        "grant_credits",
        user.username,
        "5",
        "--reason",
        "promo",
        "--initiated-by",
        staff_user.username,
        "--expires-at",
        expires.isoformat(),
        "--priority",
        "10",
        "--category",
        "paid",
        stdout=out,
    )
    lot = CreditLot.objects.get(wallet__user=user)
    assert (lot.expires_at, lot.priority, lot.category) == (expires, 10, "paid")
    assert "New balance: 5.000000" in out.getvalue()


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("--expires-at", "2001-01-01T00:00Z", "expires_at"),
        ("--priority", "500", "priority"),
        ("--category", "vip", "category"),
    ],
)
def test_grant_credits_command_refuses_bad_terms_in_one_line_and_writes_nothing(
    user, staff_user, option, value, field
):
    with pytest.raises(CommandError, match=f"^{field}: "):
        call_command(
            "grant_credits",
            user.username,
            "5",
            "--reason",
            "x",
            "--initiated-by",
            staff_user.username,
            option,
            value,
        )
    assert not CreditTransaction.objects.exists()


def test_a_date_alone_is_refused_with_the_time_it_lacks():
    # "Enter expires_at as an ISO 8601 date and time" for 2030-01-01, which is ISO 8601 (a date).
    from billing.exceptions import InvalidGrant
    from billing.services.lots import validate_expires_at

    with pytest.raises(InvalidGrant, match=r"needs a time as well as a date .* e\.g\. 2030-01-01T00:00:00Z"):
        validate_expires_at("2030-01-01")


# --- the admin ---------------------------------------------------------------------------------


def test_admin_grant_page_takes_lot_terms_and_the_wallet_page_lists_the_lots(admin_client, user):
    from django.urls import reverse

    url = reverse("admin:billing_wallet_grant", args=[user.wallet.pk])
    token = admin_client.get(url).context["form"]["submission"].value()
    expires = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    body = {
        "amount": "4",
        "reason": "trial",
        "expires_at": expires.isoformat(),
        "priority": "5",
        "category": "paid",
        "submission": token,
    }
    assert admin_client.post(url, body).status_code == 302
    lot = CreditLot.objects.get(wallet__user=user)
    assert (lot.expires_at, lot.priority, lot.category) == (expires, 5, "paid")
    page = admin_client.get(reverse("admin:billing_wallet_change", args=[user.wallet.pk]))
    assert page.status_code == 200
    assert 'id="lots-table"' in page.content.decode()
    assert [item.pk for item in page.context["lots"]] == [lot.pk]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expires_at", "2001-01-01T00:00Z"),
        ("expires_at", "tomorrow"),
        ("priority", "101"),
        ("category", "vip"),
    ],
)
def test_admin_grant_page_refuses_bad_terms_on_the_field_and_writes_nothing(admin_client, user, field, value):
    from django.urls import reverse

    url = reverse("admin:billing_wallet_grant", args=[user.wallet.pk])
    body = {"amount": "4", "reason": "x", "submission": "f" * 32, field: value}
    response = admin_client.post(url, body)
    assert response.status_code == 200
    assert response.context["form"].errors[field]
    assert not CreditTransaction.objects.filter(wallet__user=user).exists()


def test_admin_allowance_and_lot_pages_open(admin_client, user):
    from django.urls import reverse

    from billing.models import Allowance
    from billing.services.allowances import issue_allowances

    allowance = Allowance.objects.create(name="Starter", credits=D("2"), period="month")
    allowance.users.add(user)
    issue_allowances()
    for url in (
        reverse("admin:billing_allowance_changelist"),
        reverse("admin:billing_allowance_add"),
        reverse("admin:billing_allowance_change", args=[allowance.pk]),
        reverse("admin:billing_creditlot_changelist"),
    ):
        assert admin_client.get(url).status_code == 200, url
    response = admin_client.post(
        reverse("admin:billing_allowance_add"),
        {
            "name": "Weekly",
            "credits": "1.5",
            "period": "week",
            "expires_with_period": "on",
            "active": "on",
            "users": [user.pk],
            "issues-TOTAL_FORMS": "0",
            "issues-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.context["adminform"].errors if response.context else response
    assert Allowance.objects.get(name="Weekly").users.get() == user


@pytest.mark.parametrize("credits", ["-5", "0", "1e3", "10001", "abc"])
def test_admin_allowance_form_refuses_bad_credits_on_the_field(admin_client, credits):
    from django.urls import reverse

    from billing.models import Allowance

    response = admin_client.post(
        reverse("admin:billing_allowance_add"),
        {
            "name": "Bad",
            "credits": credits,
            "period": "day",
            "active": "on",
            "issues-TOTAL_FORMS": "0",
            "issues-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["credits"]
    assert not Allowance.objects.exists()


def test_the_periodic_jobs_expire_lots_and_issue_allowances(user):
    from billing import tasks
    from billing.models import Allowance

    Allowance.objects.create(name="Daily", credits=D("1"), period="day").users.add(user)
    assert tasks.issue_recurring_allowances(timestamp=0) == 1
    lot = CreditLot.objects.get(wallet__user=user)
    CreditLot.objects.filter(pk=lot.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert tasks.expire_credit_lots(timestamp=0) == 1
    assert CreditTransaction.objects.get(kind="expiry").amount == D(-1)
    assert check_ledger(user_id=user.pk).ok
