"""The billing admin: every page answers, grants go through the service, the ledger cannot be edited."""

import csv
import importlib
import io
from decimal import Decimal

import pytest
from django.apps import apps as global_apps
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import get_messages
from django.urls import reverse

from billing import services
from billing.models import CreditTransaction, LLMCallEvent, ModelPrice, Wallet
from tests.factories import LLMCallEventFactory, ModelPriceFactory, StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db

support_migration = importlib.import_module("billing.migrations.0004_support_group")
hold_view_migration = importlib.import_module("billing.migrations.0008_support_views_credit_holds")
console_groups_migration = importlib.import_module("web.migrations.0002_console_groups")


@pytest.fixture
def support_group(db):
    # A transactional test elsewhere in the suite may have flushed the migration's rows; re-running
    # the migration's own (idempotent) function restores exactly what `migrate` creates.
    support_migration.create_support_group(global_apps, None)
    hold_view_migration.add_hold_view(global_apps, None)
    console_groups_migration.create_groups(global_apps, None)
    return Group.objects.get(name=support_migration.GROUP)


@pytest.fixture
def support_client(client, support_group):
    agent = StaffUserFactory(username="agent")
    agent.groups.add(support_group)
    client.force_login(agent)
    client.agent = agent
    return client


@pytest.fixture
def ledger(db, admin_user):
    """Two customers with a grant each, one of them also charged for a call."""
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    services.grant(user=alice, amount="5", reason="Welcome", initiated_by=admin_user)
    services.grant(user=bob, amount="0.5", reason="Trial", initiated_by=admin_user)
    services.charge(
        user=alice,
        price=ModelPrice.objects.get(model="echo-1"),
        provider="echo",
        input_tokens=10,
        output_tokens=5,
    )
    return {"alice": alice, "bob": bob}


def wallet_of(user) -> Wallet:
    return Wallet.objects.get(user=user)


def grant_rows():
    return CreditTransaction.objects.filter(kind=CreditTransaction.Kind.GRANT)


def action_post(client, wallets, **fields):
    data = {"action": "grant_credits", "_selected_action": [w.pk for w in wallets], **fields}
    return client.post(reverse("admin:billing_wallet_changelist"), data)


def first_form_token(response) -> str:
    return response.context["form"]["submission"].value()


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- Every page answers ----------------------------------------------------------------------


def admin_pages(ledger):
    alice_wallet = wallet_of(ledger["alice"])
    row = CreditTransaction.objects.filter(wallet=alice_wallet).first()
    event = LLMCallEvent.objects.first()
    price = ModelPrice.objects.get(model="echo-1")
    hold = services.reserve(user=ledger["alice"], amount=Decimal("1")).hold
    return [
        reverse("admin:index"),
        reverse("admin:app_list", args=["billing"]),
        reverse("admin:billing_wallet_changelist"),
        reverse("admin:billing_wallet_changelist") + "?q=alice",
        reverse("admin:billing_wallet_changelist") + "?low_balance=yes",
        reverse("admin:billing_wallet_change", args=[alice_wallet.pk]),
        reverse("admin:billing_wallet_grant", args=[alice_wallet.pk]),
        reverse("admin:billing_credittransaction_changelist"),
        reverse("admin:billing_credittransaction_changelist") + f"?wallet={alice_wallet.pk}",
        reverse("admin:billing_credittransaction_changelist") + "?kind__exact=grant&q=alice%40example.com",
        reverse("admin:billing_credittransaction_changelist")
        + "?created_at__gte=2020-01-01T00:00:00%2B00:00",
        reverse("admin:billing_credittransaction_change", args=[row.pk]),
        reverse("admin:billing_llmcallevent_changelist"),
        reverse("admin:billing_llmcallevent_changelist") + "?model=echo-1&status__exact=ok",
        reverse("admin:billing_llmcallevent_change", args=[event.pk]),
        reverse("admin:billing_modelprice_changelist"),
        reverse("admin:billing_modelprice_add"),
        reverse("admin:billing_modelprice_change", args=[price.pk]),
        reverse("admin:billing_credithold_changelist"),
        reverse("admin:billing_credithold_changelist") + "?status__exact=held",
        reverse("admin:billing_credithold_change", args=[hold.pk]),
    ]


def test_every_billing_admin_page_answers_200_for_a_superuser(admin_client, ledger):
    for url in admin_pages(ledger):
        assert admin_client.get(url).status_code == 200, url


def test_action_intermediate_page_answers_200(admin_client, ledger):
    response = action_post(admin_client, [wallet_of(ledger["alice"])])
    assert response.status_code == 200
    assert 'name="amount"' in response.text and 'name="reason"' in response.text


# --- Wallets ---------------------------------------------------------------------------------


def test_wallet_changelist_shows_balance_and_low_balance_marker(admin_client, ledger, settings):
    settings.LOW_BALANCE_THRESHOLD = Decimal("1")
    response = admin_client.get(reverse("admin:billing_wallet_changelist") + "?q=example.com")
    rows = {w.user.username: w for w in response.context["cl"].result_list}
    assert set(rows) == {"admin", "alice", "bob"}
    # bob (0.5) and admin (0) are at or under the threshold, alice (about 5) is not.
    assert response.text.count('class="low-balance"') == 2
    assert "0.500000" in response.text
    admin = response.context["cl"].model_admin
    assert "low-balance" in admin.low_balance(rows["bob"])
    assert "low-balance" not in admin.low_balance(rows["alice"])


def test_wallet_search_finds_by_username_and_email(admin_client, ledger):
    by_name = admin_client.get(reverse("admin:billing_wallet_changelist") + "?q=alice")
    by_email = admin_client.get(reverse("admin:billing_wallet_changelist") + "?q=bob@example.com")
    assert [w.user.username for w in by_name.context["cl"].result_list] == ["alice"]
    assert [w.user.username for w in by_email.context["cl"].result_list] == ["bob"]


def test_low_balance_filter_lists_only_wallets_at_or_under_the_threshold(admin_client, ledger, settings):
    settings.LOW_BALANCE_THRESHOLD = Decimal("1")
    response = admin_client.get(reverse("admin:billing_wallet_changelist") + "?low_balance=yes")
    listed = {w.user.username for w in response.context["cl"].result_list}
    assert "bob" in listed and "alice" not in listed


def test_wallet_page_shows_recent_ledger_and_a_grant_link(admin_client, ledger):
    wallet = wallet_of(ledger["alice"])
    response = admin_client.get(reverse("admin:billing_wallet_change", args=[wallet.pk]))
    assert [row.reason for row in response.context["ledger"]][-1] == "Welcome"
    assert len(response.context["ledger"]) == 2
    assert 'id="ledger-table"' in response.text
    assert reverse("admin:billing_wallet_grant", args=[wallet.pk]) in response.text
    assert 'name="_save"' not in response.text  # nothing on a wallet is editable
    assert "Available (balance - held)" in response.text


def test_wallet_page_ledger_stops_at_fifty_rows(admin_client, admin_user):
    user = UserFactory()
    for n in range(55):
        services.grant(user=user, amount="1", reason=f"grant {n}", initiated_by=admin_user)
    response = admin_client.get(reverse("admin:billing_wallet_change", args=[wallet_of(user).pk]))
    shown = [row.reason for row in response.context["ledger"]]
    assert len(shown) == 50
    assert shown[0] == "grant 54"


def test_wallet_cannot_be_added_changed_or_deleted_even_by_a_superuser(admin_client, ledger):
    wallet = wallet_of(ledger["alice"])
    assert admin_client.get(reverse("admin:billing_wallet_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:billing_wallet_change", args=[wallet.pk]), {"balance": "999999", "_save": "Save"}
    )
    assert response.status_code == 403
    assert (
        admin_client.post(
            reverse("admin:billing_wallet_delete", args=[wallet.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert wallet_of(ledger["alice"]).balance == wallet.balance


# --- The grant action ------------------------------------------------------------------------


def test_grant_action_grants_each_selected_wallet_once_as_the_staff_user(admin_client, admin_user, ledger):
    carol = UserFactory(username="carol")
    wallets = [wallet_of(ledger["alice"]), wallet_of(ledger["bob"]), wallet_of(carol)]
    before = {w.pk: w.balance for w in wallets}
    form = action_post(admin_client, wallets)
    response = action_post(
        admin_client,
        wallets,
        apply="yes",
        amount="25",
        reason="Outage compensation",
        submission=first_form_token(form),
    )
    assert response.status_code == 302
    rows = CreditTransaction.objects.filter(reason="Outage compensation")
    assert sorted(rows.values_list("wallet_id", flat=True)) == sorted(before)
    assert {row.initiated_by_id for row in rows} == {admin_user.pk}
    assert {row.amount for row in rows} == {Decimal("25")}
    for wallet in wallets:
        assert wallet_of(wallet.user).balance == before[wallet.pk] + 25
    assert "Granted 25.000000 credits to 3 wallets." in messages_of(response)
    assert LogEntry.objects.filter(object_id=str(wallets[0].pk), change_message__contains="Granted").exists()


def test_grant_action_leaves_unselected_wallets_alone(admin_client, ledger):
    alice_wallet = wallet_of(ledger["alice"])
    bob_before = wallet_of(ledger["bob"]).balance
    form = action_post(admin_client, [alice_wallet])
    action_post(
        admin_client,
        [alice_wallet],
        apply="yes",
        amount="1.5",
        reason="Sorry",
        submission=first_form_token(form),
    )
    assert CreditTransaction.objects.filter(reason="Sorry").count() == 1
    assert wallet_of(ledger["bob"]).balance == bob_before


@pytest.mark.parametrize(
    "amount",
    ["0", "-5", "10000.000001", "1e3", "abc", "1.0000001", "", " ", "１０", "NaN", "Infinity", "1_000", "+5"],
)
def test_grant_action_rejects_a_bad_amount_and_writes_nothing(admin_client, ledger, amount):
    wallet = wallet_of(ledger["alice"])
    rows_before, balance_before = CreditTransaction.objects.count(), wallet.balance
    response = action_post(
        admin_client, [wallet], apply="yes", amount=amount, reason="Goodwill", submission="a" * 32
    )
    assert response.status_code == 200
    assert response.context["form"].errors["amount"]
    assert 'class="errorlist' in response.text
    assert CreditTransaction.objects.count() == rows_before
    assert wallet_of(ledger["alice"]).balance == balance_before


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_grant_action_requires_a_reason_of_at_most_500_characters(admin_client, ledger, reason):
    response = action_post(
        admin_client,
        [wallet_of(ledger["alice"])],
        apply="yes",
        amount="5",
        reason=reason,
        submission="b" * 32,
    )
    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    assert (
        not CreditTransaction.objects.filter(amount=Decimal("5"), wallet__user=ledger["alice"])
        .exclude(reason="Welcome")
        .exists()
    )


def test_grant_accepts_the_largest_amount_and_six_places(admin_client, ledger):
    wallet = wallet_of(ledger["bob"])
    for amount in ["10000", "0.000001"]:
        action_post(
            admin_client,
            [wallet],
            apply="yes",
            amount=amount,
            reason="Edge",
            submission=amount.replace(".", ""),
        )
    assert sorted(CreditTransaction.objects.filter(reason="Edge").values_list("amount", flat=True)) == [
        Decimal("0.000001"),
        Decimal("10000"),
    ]


def test_a_resubmitted_grant_form_grants_only_once(admin_client, ledger):
    wallet = wallet_of(ledger["alice"])
    fields = {"apply": "yes", "amount": "3", "reason": "Double click", "submission": "c" * 32}
    first = action_post(admin_client, [wallet], **fields)
    second = action_post(admin_client, [wallet], **fields)
    assert CreditTransaction.objects.filter(reason="Double click").count() == 1
    assert "Granted 3.000000 credits to 1 wallet." in messages_of(first)
    assert any("already submitted" in message for message in messages_of(second))


def test_a_resubmitted_form_with_another_amount_is_refused_on_the_form(admin_client, ledger):
    wallet = wallet_of(ledger["alice"])
    action_post(admin_client, [wallet], apply="yes", amount="3", reason="Again", submission="d" * 32)
    response = action_post(
        admin_client, [wallet], apply="yes", amount="4", reason="Again", submission="d" * 32
    )
    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert CreditTransaction.objects.filter(reason="Again").count() == 1


def test_grant_page_grants_to_its_one_wallet(admin_client, admin_user, ledger):
    wallet = wallet_of(ledger["bob"])
    url = reverse("admin:billing_wallet_grant", args=[wallet.pk])
    token = admin_client.get(url).context["form"]["submission"].value()
    response = admin_client.post(
        url, {"amount": "12.5", "reason": "Refund for a bad answer", "submission": token}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:billing_wallet_change", args=[wallet.pk])
    row = CreditTransaction.objects.get(reason="Refund for a bad answer")
    assert (row.wallet_id, row.amount, row.initiated_by_id) == (wallet.pk, Decimal("12.5"), admin_user.pk)
    assert wallet_of(ledger["bob"]).balance == Decimal("13")


def test_grant_page_rejects_a_bad_amount_and_writes_nothing(admin_client, ledger):
    wallet = wallet_of(ledger["bob"])
    url = reverse("admin:billing_wallet_grant", args=[wallet.pk])
    response = admin_client.post(url, {"amount": "1e3", "reason": "x", "submission": "e" * 32})
    assert response.status_code == 200
    assert "no exponent" in " ".join(response.context["form"].errors["amount"])
    assert grant_rows().filter(wallet=wallet).count() == 1


def test_grant_page_for_an_unknown_wallet_redirects_with_a_message(admin_client):
    response = admin_client.get(reverse("admin:billing_wallet_grant", args=[987654]))
    assert response.status_code == 302


# --- The ledger ------------------------------------------------------------------------------


def test_ledger_admin_refuses_add_change_and_delete(admin_client, ledger):
    row = CreditTransaction.objects.filter(wallet__user=ledger["alice"]).first()
    assert admin_client.get(reverse("admin:billing_credittransaction_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:billing_credittransaction_change", args=[row.pk]),
        {"amount": "1000", "balance_after": "1000", "kind": "grant", "reason": "tampered"},
    )
    assert response.status_code == 403
    assert (
        admin_client.get(reverse("admin:billing_credittransaction_delete", args=[row.pk])).status_code == 403
    )
    assert (
        admin_client.post(
            reverse("admin:billing_credittransaction_delete", args=[row.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    fresh = CreditTransaction.objects.get(pk=row.pk)
    assert (fresh.amount, fresh.reason) == (row.amount, row.reason)


def test_ledger_view_page_has_no_save_or_delete(admin_client, ledger):
    row = CreditTransaction.objects.first()
    text = admin_client.get(reverse("admin:billing_credittransaction_change", args=[row.pk])).text
    assert 'name="_save"' not in text
    assert reverse("admin:billing_credittransaction_delete", args=[row.pk]) not in text


def test_ledger_changelist_shows_user_and_initiator_newest_first(admin_client, admin_user, ledger):
    response = admin_client.get(reverse("admin:billing_credittransaction_changelist"))
    rows = list(response.context["cl"].result_list)
    assert [r.pk for r in rows] == sorted((r.pk for r in rows), reverse=True)
    assert admin_user.username in response.text and "alice" in response.text
    assert response.context["cl"].show_full_result_count is False
    debit = next(r for r in rows if r.kind == "debit")  # nobody's hand on it: the system's
    assert response.context["cl"].model_admin.initiator(debit) == "system"


def test_ledger_filters_by_kind_and_wallet(admin_client, ledger):
    wallet = wallet_of(ledger["alice"])
    url = reverse("admin:billing_credittransaction_changelist")
    debits = admin_client.get(url + "?kind__exact=debit").context["cl"].result_list
    assert {r.kind for r in debits} == {"debit"}
    alice_rows = admin_client.get(url + f"?wallet={wallet.pk}").context["cl"].result_list
    assert {r.wallet_id for r in alice_rows} == {wallet.pk} and len(alice_rows) == 2


def test_ledger_export_action_streams_the_selected_rows_as_csv(admin_client, admin_user, ledger):
    selected = list(CreditTransaction.objects.filter(kind="grant"))
    response = admin_client.post(
        reverse("admin:billing_credittransaction_changelist"),
        {"action": "export_ledger_csv", "_selected_action": [r.pk for r in selected]},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted(int(line["id"]) for line in lines) == sorted(r.pk for r in selected)
    assert {line["initiated_by_username"] for line in lines} == {admin_user.username}
    assert {line["amount"] for line in lines} == {"5.000000", "0.500000"}


def test_ledger_export_neutralizes_spreadsheet_formulas_in_reasons(admin_client, admin_user, ledger):
    row = services.grant(user=ledger["bob"], amount="1", reason="=HYPERLINK(1)", initiated_by=admin_user)
    response = admin_client.post(
        reverse("admin:billing_credittransaction_changelist"),
        {"action": "export_ledger_csv", "_selected_action": [row.pk]},
    )
    (line,) = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    assert line["reason"] == "'=HYPERLINK(1)"


# --- Events and prices -----------------------------------------------------------------------


def test_llm_call_events_are_view_only_and_filter_by_model_and_status(admin_client, ledger):
    ModelPriceFactory(model="gpt-x")
    LLMCallEventFactory(user=ledger["bob"], model="gpt-x", status="error", cost=0)
    url = reverse("admin:billing_llmcallevent_changelist")
    failed = admin_client.get(url + "?status__exact=error").context["cl"].result_list
    assert [e.model for e in failed] == ["gpt-x"]
    echo = admin_client.get(url + "?model=echo-1").context["cl"].result_list
    assert {e.model for e in echo} == {"echo-1"}
    event = LLMCallEvent.objects.first()
    assert admin_client.get(reverse("admin:billing_llmcallevent_add")).status_code == 403
    assert (
        admin_client.post(
            reverse("admin:billing_llmcallevent_change", args=[event.pk]), {"cost": "9"}
        ).status_code
        == 403
    )


def test_model_price_admin_saves_a_valid_price(admin_client):
    response = admin_client.post(
        reverse("admin:billing_modelprice_add"),
        {"model": "gpt-new", "input_price_per_1k": "0.25", "output_price_per_1k": "1", "active": "on"},
    )
    assert response.status_code == 302
    price = ModelPrice.objects.get(model="gpt-new")
    assert (price.input_price_per_1k, price.output_price_per_1k) == (Decimal("0.25"), Decimal("1"))


def test_model_price_admin_changes_prices_but_not_the_model_name(admin_client):
    price = ModelPrice.objects.get(model="echo-1")
    response = admin_client.post(
        reverse("admin:billing_modelprice_change", args=[price.pk]),
        {"model": "renamed", "input_price_per_1k": "1.25", "output_price_per_1k": "0", "active": "on"},
    )
    assert response.status_code == 302
    price.refresh_from_db()
    assert (price.model, price.input_price_per_1k, price.output_price_per_1k) == (
        "echo-1",
        Decimal("1.25"),
        Decimal("0"),
    )
    assert LogEntry.objects.filter(object_id=str(price.pk)).exists()


@pytest.mark.parametrize("name", ["has space", "", "/leading-slash", "x" * 101])
def test_model_price_admin_refuses_a_bad_model_name(admin_client, name):
    response = admin_client.post(
        reverse("admin:billing_modelprice_add"),
        {"model": name, "input_price_per_1k": "1", "output_price_per_1k": "1", "active": "on"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["model"]
    assert not ModelPrice.objects.exclude(model="echo-1").exists()


def test_model_price_admin_refuses_a_model_that_already_has_a_price(admin_client):
    response = admin_client.post(
        reverse("admin:billing_modelprice_add"),
        {"model": "echo-1", "input_price_per_1k": "9", "output_price_per_1k": "9", "active": "on"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["model"]
    assert ModelPrice.objects.get(model="echo-1").input_price_per_1k != Decimal("9")


@pytest.mark.parametrize("bad", ["-0.5", "1e3", "abc", "0.0000001", "", "99999999999999", "1000000.000001"])
def test_model_price_admin_shows_a_form_error_for_a_bad_price(admin_client, bad):
    price = ModelPrice.objects.get(model="echo-1")
    response = admin_client.post(
        reverse("admin:billing_modelprice_change", args=[price.pk]),
        {"input_price_per_1k": bad, "output_price_per_1k": "2", "active": "on"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["input_price_per_1k"]
    assert ModelPrice.objects.get(pk=price.pk).input_price_per_1k == price.input_price_per_1k


def test_model_prices_cannot_be_deleted(admin_client):
    price = ModelPrice.objects.get(model="echo-1")
    assert (
        admin_client.post(
            reverse("admin:billing_modelprice_delete", args=[price.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert ModelPrice.objects.filter(pk=price.pk).exists()


# --- Who may do what -------------------------------------------------------------------------


def test_support_group_holds_what_an_agent_needs_and_no_more(support_group):
    codenames = set(support_group.permissions.values_list("content_type__app_label", "codename"))
    assert codenames == {
        ("billing", "view_wallet"),
        ("billing", "grant_credits"),
        ("billing", "view_credittransaction"),
        ("billing", "view_llmcallevent"),
        ("billing", "view_modelprice"),
        ("billing", "view_credithold"),
        ("reporting", "view_dailyusage"),
        ("accounts", "view_user"),
        # The console's customer page and what it links to (web/migrations/0002_console_groups.py).
        ("web", "view_customer"),
        ("sessions_app", "view_chatsession"),
        ("sessions_app", "view_turn"),
        ("sessions_app", "view_toolcallevent"),
        ("sessions_app", "view_sessionsummary"),
        ("sessions_app", "view_userfile"),
        ("billing", "view_walletevent"),
        ("notifications", "view_delivery"),
        # API keys' pages, linked from the customer page (web/migrations/0003_console_groups_read_api_keys.py).
        ("accounts", "view_apikey"),
        # Purchases through Stripe Checkout (billing/migrations/0020_stripe_checkout_purchases.py).
        ("billing", "view_purchase"),
    }
    # Support grants up to SUPPORT_GRANT_LIMIT at a time: the permission past it is no group's.
    assert ("billing", "grant_beyond_support_limit") not in codenames


def test_support_agent_can_view_every_billing_page_and_grant(support_client, ledger):
    for url in admin_pages(ledger):
        if url.endswith("/add/"):
            continue
        assert support_client.get(url).status_code == 200, url
    wallet = wallet_of(ledger["bob"])
    response = action_post(
        support_client, [wallet], apply="yes", amount="2", reason="Agent grant", submission="f" * 32
    )
    assert response.status_code == 302
    row = CreditTransaction.objects.get(reason="Agent grant")
    assert row.initiated_by == support_client.agent


def test_support_agent_cannot_edit_or_add_prices(support_client):
    price = ModelPrice.objects.get(model="echo-1")
    assert support_client.get(reverse("admin:billing_modelprice_add")).status_code == 403
    response = support_client.post(
        reverse("admin:billing_modelprice_change", args=[price.pk]),
        {"input_price_per_1k": "0", "output_price_per_1k": "0", "active": "on"},
    )
    assert response.status_code == 403
    assert ModelPrice.objects.get(pk=price.pk).input_price_per_1k == price.input_price_per_1k


def test_support_agent_can_export_the_ledger_and_the_export_is_logged(support_client, ledger, caplog):
    row = CreditTransaction.objects.first()
    caplog.set_level("INFO", logger="reporting.admin")
    response = support_client.post(
        reverse("admin:billing_credittransaction_changelist"),
        {"action": "export_ledger_csv", "_selected_action": [row.pk]},
    )
    assert response["Content-Type"].startswith("text/csv")
    (record,) = [r for r in caplog.records if r.getMessage() == "ledger export"]
    assert (record.staff_user_id, record.selected_ids) == (support_client.agent.pk, 1)


def test_staff_who_may_view_wallets_but_not_grant_gets_no_grant_action(client, ledger):
    viewer = StaffUserFactory()
    viewer.user_permissions.add(Permission.objects.get(codename="view_wallet"))
    client.force_login(viewer)
    wallet = wallet_of(ledger["bob"])
    changelist = client.get(reverse("admin:billing_wallet_changelist"))
    assert changelist.status_code == 200
    assert "grant_credits" not in changelist.text
    assert client.get(reverse("admin:billing_wallet_grant", args=[wallet.pk])).status_code == 403
    action_post(client, [wallet], apply="yes", amount="2", reason="Sneaky", submission="g" * 32)
    assert not CreditTransaction.objects.filter(reason="Sneaky").exists()


def test_grant_permission_without_view_permission_opens_no_grant_page(client, ledger):
    granter = StaffUserFactory()
    granter.user_permissions.add(
        Permission.objects.get_or_create(
            codename="grant_credits",
            content_type=ContentType.objects.get_for_model(Wallet),
            defaults={"name": "Can grant credits"},
        )[0]
    )
    client.force_login(granter)
    wallet = wallet_of(ledger["bob"])
    assert client.get(reverse("admin:billing_wallet_grant", args=[wallet.pk])).status_code == 403


def test_staff_without_permissions_gets_403_on_billing_pages(client, ledger):
    client.force_login(StaffUserFactory())
    for url in admin_pages(ledger)[2:]:
        assert client.get(url).status_code == 403, url


def test_non_staff_user_is_sent_to_the_login_page(client, ledger):
    client.force_login(ledger["alice"])
    for url in admin_pages(ledger):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url


# --- Enforcement overrides (the staged rollout) ------------------------------------------------


@pytest.mark.parametrize("enforcement", ["exempt", "enforced", "default"])
def test_enforcement_actions_set_the_override_and_log_the_staff_user(
    admin_client, admin_user, ledger, enforcement, caplog
):
    wallets = [wallet_of(ledger["alice"]), wallet_of(ledger["bob"])]
    Wallet.objects.filter(pk=wallets[1].pk).update(
        enforcement="exempt" if enforcement != "exempt" else "enforced"
    )
    data = {"action": f"enforcement_{enforcement}", "_selected_action": [w.pk for w in wallets]}
    before = {w.pk: Wallet.objects.get(pk=w.pk).enforcement for w in wallets}

    asked = admin_client.post(reverse("admin:billing_wallet_changelist"), data)
    assert (
        asked.status_code == 200
        and f"Set enforcement to {enforcement} on 2 wallets?" in asked.content.decode()
    )
    assert {w.pk: Wallet.objects.get(pk=w.pk).enforcement for w in wallets} == before  # asked, not done
    with caplog.at_level("INFO", logger="billing.services"):
        response = admin_client.post(
            reverse("admin:billing_wallet_changelist"), {**data, "apply": "yes"}, follow=True
        )

    assert {w.enforcement for w in Wallet.objects.filter(pk__in=[w.pk for w in wallets])} == {enforcement}
    changed = 1 if enforcement == "default" else 2
    assert f"Enforcement set to {enforcement} on {changed} wallet" in " ".join(messages_of(response))
    logged = [r for r in caplog.records if r.getMessage() == "wallet enforcement changed"]
    assert len(logged) == changed and {r.changed_by for r in logged} == {admin_user.pk}


def test_support_agents_cannot_switch_enforcement(support_client, ledger):
    wallet = wallet_of(ledger["alice"])
    changelist = support_client.get(reverse("admin:billing_wallet_changelist"))
    assert "enforcement_exempt" not in changelist.content.decode()
    support_client.post(
        reverse("admin:billing_wallet_changelist"),
        {"action": "enforcement_exempt", "_selected_action": [wallet.pk], "apply": "yes"},
    )
    assert wallet_of(ledger["alice"]).enforcement == "default"


def test_credit_holds_are_view_only(admin_client, ledger):
    hold = services.reserve(user=ledger["alice"], amount=Decimal("1")).hold
    assert admin_client.get(reverse("admin:billing_credithold_add")).status_code == 403
    assert admin_client.post(reverse("admin:billing_credithold_delete", args=[hold.pk])).status_code == 403
    assert (
        "Save"
        not in admin_client.get(reverse("admin:billing_credithold_change", args=[hold.pk])).content.decode()
    )
