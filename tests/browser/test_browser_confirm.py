"""Staff actions that cut a customer off ask first, in a real browser: revoking an API key, switching enforcement."""

import pytest
from django.db import connection

from accounts.keys import create_api_key
from accounts.models import ApiKey
from billing.models import Wallet
from tests.browser.pages import admin_login, expect, run_action, shoot
from tests.factories import StaffUserFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def customer(db):
    StaffUserFactory(username="boss", is_superuser=True)
    carol = UserFactory(username="carol")
    key, _ = create_api_key(user=carol, name="carol's script")
    return carol, key


@pytest.mark.django_db(transaction=True)
def test_revoking_a_key_and_switching_enforcement_ask_before_they_act(live_server, customer, page):
    carol, key = customer
    url = live_server.url
    admin_login(page, url, "boss")

    # A key's page: no Save over read-only fields; "Revoke this key…" names it and asks.
    page.goto(f"{url}/admin/accounts/apikey/{key.pk}/change/")
    expect(page.locator("input[name=_save]")).to_have_count(0)
    page.click("#revoke-key")
    expect(page.locator("h1")).to_have_text("Revoke 1 API key?")
    expect(page.locator("#confirm-objects")).to_contain_text(key.prefix)
    shoot(page, "confirm-01-revoke-key")
    page.click("text=Cancel")
    expect(page.locator("#revoke-key")).to_be_visible()
    page.click("#revoke-key")
    page.click("input[type=submit][value='Revoke 1 key']")
    expect(page.locator(".messagelist .success")).to_contain_text(f"Revoked the key {key.prefix}")
    expect(page.locator("#revoke-key")).to_have_count(0)

    # The wallets list: exempting carol says what it means before it changes anything.
    page.goto(f"{url}/admin/billing/wallet/")
    run_action(page, page.locator("#result_list tbody tr", has_text="carol"), "enforcement_exempt")
    expect(page.locator("h1")).to_have_text("Set enforcement to exempt on 1 wallet?")
    expect(page.locator("#content")).to_contain_text("never refused for want of credits")
    shoot(page, "confirm-02-enforcement")
    try:
        assert Wallet.objects.get(user=carol).enforcement == "default"  # asked, not done
        page.click("input[type=submit][value='Set exempt']")
        expect(page.locator(".messagelist .success")).to_contain_text("Enforcement set to exempt on 1 wallet")
        assert Wallet.objects.get(user=carol).enforcement == "exempt"
        assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    finally:
        connection.close()  # opened inside Playwright's greenlet: pytest-django would not close it
