"""A user buys credits in a real browser: the top-up prompt's "Buy credits", Stripe's page (the local double),
Pay, and back to the credits added (a paid lot on the wallet page); a double click starts one purchase."""

from decimal import Decimal

import pytest
from django.db import connection

from billing.models import Purchase, Wallet
from billing.reconcile import check_ledger
from tests.browser.pages import expect, shoot, sign_in
from tests.factories import UserFactory
from tests.stripe_fixtures import WEBHOOK_PATH, WEBHOOK_SECRET

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def dana(db):
    return UserFactory(username="dana")


@pytest.mark.django_db(transaction=True)
def test_a_user_buys_credits_on_the_stripe_double_and_sees_them(live_server, dana, stripe_double, page):
    stripe_double.webhook_url = live_server.url + WEBHOOK_PATH
    stripe_double.webhook_secret = WEBHOOK_SECRET
    url = live_server.url
    sign_in(page, url, "dana")
    expect(page.locator("#balance")).to_have_text("0.000000")

    page.click("#buy-credits-link")
    expect(page.locator("h1")).to_have_text("Buy credits")
    page.fill("#id_credits", "300")
    page.dblclick("#buy-form button[type=submit]")  # a double click: one purchase

    # Our interstitial refreshes to Stripe's page (the double), across origins, under our CSP.
    expect(page.locator("h1")).to_have_text("Pay 3.00 USD")
    shoot(page, "purchase-01-stripe-double")
    page.click("#pay")

    expect(page.locator("#purchase-result")).to_have_text("Thank you: 300 credits were added to your wallet.")
    expect(page.locator("#purchases")).to_contain_text("paid, credited")
    shoot(page, "purchase-02-credited")
    page.goto(f"{url}/")
    expect(page.locator("#balance")).to_have_text("300.000000")
    expect(page.locator("#ledger")).to_contain_text("purchase")
    # A paid lot that never expires, and so no expiry to announce.
    expect(page.locator("#lot-list tbody tr")).to_have_count(1)
    expect(page.locator("#lot-list tbody tr")).to_contain_text("purchase")
    expect(page.locator("#lot-list tbody tr")).to_contain_text("paid")
    expect(page.locator("#lot-list tbody tr")).to_contain_text("never")
    expect(page.locator("#next-expiry")).to_have_count(0)
    try:
        assert Purchase.objects.filter(user=dana).count() == 1
        assert Wallet.objects.get(user=dana).balance == Decimal("300")
        assert check_ledger().ok
    finally:
        connection.close()  # opened inside Playwright's greenlet: pytest-django would not close it


@pytest.mark.django_db(transaction=True)
def test_cancelling_on_stripes_page_charges_nothing(live_server, dana, stripe_double, page):
    url = live_server.url
    sign_in(page, url, "dana")
    page.goto(f"{url}/buy/")
    page.fill("#id_credits", "20")
    page.click("#buy-form button[type=submit]")
    page.click("#cancel")

    expect(page.locator("#purchase-result")).to_contain_text("nothing was charged")
    expect(page.locator("#purchases")).to_contain_text("waiting for payment")
    try:
        assert Wallet.objects.get(user=dana).balance == Decimal("0")
    finally:
        connection.close()
