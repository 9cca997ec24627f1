"""A support agent refunds part of a debit in a real browser, through the ledger's "Refund…" action."""

from decimal import Decimal

import pytest
from django.db import connection

from billing import services
from billing.models import CreditTransaction
from billing.reconcile import check_ledger
from tests.browser.pages import admin_login, expect, run_action, shoot
from tests.factories import ModelPriceFactory, StaffUserFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def debit(db):
    StaffUserFactory(username="boss", is_superuser=True)
    carol = UserFactory(username="carol")
    price = ModelPriceFactory(model="flat-1", input_price_per_1k=Decimal(1), output_price_per_1k=Decimal(1))
    charged = services.charge(user=carol, price=price, provider="echo", input_tokens=1000, output_tokens=1000)
    return charged.transaction


@pytest.mark.django_db(transaction=True)
def test_support_refunds_part_of_a_debit_from_the_ledger(live_server, debit, page):
    url = live_server.url
    admin_login(page, url, "boss")
    expect(page.locator("#site-name")).to_be_visible()

    page.goto(f"{url}/admin/billing/credittransaction/?kind=debit")
    row = page.locator("#result_list tbody tr", has_text="carol")
    run_action(page, row, "refund")

    # The intermediate form: the debit, what is left of it, then amount and reason.
    expect(page.locator("h1")).to_have_text("Refund debits")
    expect(page.locator("#refund-rows")).to_contain_text("2.000000")
    page.fill("#id_amount", "5")
    page.fill("#id_reason", "Reply was cut off")
    page.click("input[type=submit][value='Refund']")
    expect(page.locator(".errorlist")).to_contain_text("left to refund")
    shoot(page, "refund-01-form-error")
    page.fill("#id_amount", "0.75")
    page.click("input[type=submit][value='Refund']")

    expect(page.locator(".messagelist .success")).to_contain_text("1 ledger row(s) written")
    shoot(page, "refund-02-ledger-after")
    refund = CreditTransaction.objects.select_related("initiated_by").get(kind="refund")
    try:
        assert (refund.amount, refund.refund_of_id, refund.initiated_by.username) == (
            Decimal("0.75"),
            debit.pk,
            "boss",
        )
        assert check_ledger().ok
    finally:
        connection.close()  # opened inside Playwright's greenlet: pytest-django would not close it
