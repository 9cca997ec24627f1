"""SUPPORT_GRANT_LIMIT: staff without "grant beyond the support limit" grant at most that much at once,
refused the same way by the service, the admin form, the staff API and grant_credits, and nothing written."""

import importlib
from decimal import Decimal
from io import StringIO

import pytest
from django.apps import apps as global_apps
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from billing import services
from billing.exceptions import GrantLimitExceeded
from billing.models import CreditTransaction, Wallet
from tests.factories import StaffUserFactory, beyond_the_support_limit, client_for

pytestmark = pytest.mark.django_db

support_migration = importlib.import_module("billing.migrations.0004_support_group")
limit_migration = importlib.import_module("billing.migrations.0019_grant_beyond_support_limit_permission")


@pytest.fixture(autouse=True)
def _permission_exists(db):
    # A transactional test elsewhere may have flushed the migration's row; its function restores it.
    limit_migration.create_permission(global_apps, None)


@pytest.fixture
def agent(db):
    """A Support agent: staff in the Support group, as the migrations make it."""
    support_migration.create_support_group(global_apps, None)
    agent = StaffUserFactory(username="agent")
    agent.groups.add(Group.objects.get(name=support_migration.GROUP))
    return agent


def nothing_granted(user) -> bool:
    return not CreditTransaction.objects.filter(wallet__user=user).exists()


# --- The service ---------------------------------------------------------------------------------


def test_an_agent_grants_up_to_the_limit_and_not_a_credit_more(agent, user):
    row = services.grant(user=user, amount="500", reason="goodwill", initiated_by=agent)
    assert row.amount == Decimal("500")
    with pytest.raises(GrantLimitExceeded) as refused:
        services.grant(user=user, amount="500.000001", reason="more", initiated_by=agent)
    assert refused.value.field == "amount" and "500.000000" in refused.value.message
    assert "SUPPORT_GRANT_LIMIT" in refused.value.message
    assert CreditTransaction.objects.filter(wallet__user=user).count() == 1


def test_superusers_and_staff_with_the_permission_grant_up_to_the_services_maximum(user):
    boss = StaffUserFactory(is_superuser=True)
    trusted = beyond_the_support_limit(StaffUserFactory())
    services.grant(user=user, amount="10000", reason="big deal", initiated_by=boss)
    services.grant(user=user, amount="2500", reason="refund by hand", initiated_by=trusted)
    assert Wallet.objects.get(user=user).balance == Decimal("12500")


def test_the_limit_is_a_setting(agent, user, settings):
    settings.SUPPORT_GRANT_LIMIT = Decimal("20")
    with pytest.raises(GrantLimitExceeded, match="20.000000"):
        services.grant(user=user, amount="21", reason="x", initiated_by=agent)
    settings.SUPPORT_GRANT_LIMIT = Decimal("5000")
    services.grant(user=user, amount="4000", reason="x", initiated_by=agent)


def test_beyond_the_services_maximum_the_maximums_words_apply_to_everyone(agent, user):
    with pytest.raises(Exception, match="less than or equal to 10000") as refused:
        services.grant(user=user, amount="10001", reason="x", initiated_by=agent)
    assert not isinstance(refused.value, GrantLimitExceeded)


def test_a_positive_adjustment_is_limited_like_a_grant_a_negative_one_is_not(agent, user):
    with pytest.raises(GrantLimitExceeded):
        services.adjust(user=user, amount="501", reason="x", initiated_by=agent)
    assert nothing_granted(user)
    row = services.adjust(user=user, amount="-501", reason="clawback", initiated_by=agent)
    assert row.amount == Decimal("-501")


def test_the_support_group_does_not_hold_the_permission(agent):
    assert not agent.has_perm(services.GRANT_BEYOND_LIMIT_PERMISSION)
    assert not Group.objects.filter(permissions__codename="grant_beyond_support_limit").exists()


# --- The three surfaces ----------------------------------------------------------------------------


def test_the_staff_api_answers_400_on_amount_naming_the_limit(agent, user):
    url = f"/api/v1/admin/wallets/{user.pk}/grant"
    response = client_for(agent).post(url, {"amount": "750", "reason": "x"}, format="json")
    assert response.status_code == 400
    assert "at most 500.000000" in response.json()["amount"][0]
    assert nothing_granted(user)
    assert client_for(agent).post(url, {"amount": "499", "reason": "x"}, format="json").status_code == 200


def test_the_admin_grant_form_shows_the_limit_on_the_amount_and_grants_nothing(agent, user):
    client = Client()
    client.force_login(agent)
    wallet = Wallet.objects.get(user=user)
    url = reverse("admin:billing_wallet_grant", args=[wallet.pk])
    page = client.get(url)
    assert "at most 500.000000 at once" in page.content.decode()  # said before it is tried
    response = client.post(url, {"amount": "600", "reason": "x", "submission": "a" * 32})
    assert response.status_code == 200
    assert "at most 500.000000" in response.context["form"].errors["amount"][0]
    assert 'value="600"' in response.content.decode()  # what was typed is kept
    assert nothing_granted(user)


def test_grant_credits_refuses_in_one_line_naming_the_limit(agent, user):
    with pytest.raises(CommandError, match=r"^amount: Ensure this value is at most 500\.000000"):
        call_command(
            "grant_credits",
            user.username,
            "501",
            "--reason",
            "x",
            "--initiated-by",
            "agent",
            stdout=StringIO(),
        )
    assert nothing_granted(user)


def test_finance_still_cannot_grant_at_all(user):
    importlib.import_module("web.migrations.0002_console_groups").create_groups(global_apps, None)
    finance = StaffUserFactory(username="fin")
    finance.groups.add(Group.objects.get(name="Finance"))
    client = Client()
    client.force_login(finance)
    wallet = Wallet.objects.get(user=user)
    url = reverse("admin:billing_wallet_grant", args=[wallet.pk])
    assert client.post(url, {"amount": "5", "reason": "x", "submission": "b" * 32}).status_code == 403
    assert nothing_granted(user)


def test_the_admin_adjust_action_refuses_adding_more_than_the_limit_on_the_amount(agent, user):
    client = Client()
    client.force_login(agent)
    wallet = Wallet.objects.get(user=user)
    url = reverse("admin:billing_wallet_changelist")
    body = {
        "action": "adjust_credits",
        "_selected_action": [wallet.pk],
        "apply": "yes",
        "submission": "c" * 32,
    }
    response = client.post(url, {**body, "amount": "501", "reason": "typo fix"})
    assert response.status_code == 200
    assert "at most 500.000000" in " ".join(response.context["form"].errors["amount"])
    assert nothing_granted(user)
    assert client.post(url, {**body, "amount": "-501", "reason": "clawback"}).status_code == 302
