"""After a streamed answer the chat page's "Available credits" is what is available, not the balance:
while another call holds credits, the balance the turn's `done` carries would read too high."""

from decimal import Decimal

import pytest
from django.db import connection

from billing.customer_selectors import wallet_state
from billing.models import ModelPrice
from billing.services import reserve
from tests.browser.pages import expect, sign_in
from tests.factories import ChatSessionFactory, UserFactory, fund

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def held(db):
    # Transactional tests before this one may have flushed the migration's echo-1 price.
    ModelPrice.objects.get_or_create(
        model="echo-1", defaults={"input_price_per_1k": Decimal("0.5"), "output_price_per_1k": Decimal("1.5")}
    )
    user = UserFactory(username="holder")
    fund(user, "50")
    reserve(user=user, amount=Decimal("10"))  # another call (a key's, another tab's) still running
    return ChatSessionFactory(owner=user, title="Held")


@pytest.mark.django_db(transaction=True)
def test_after_a_streamed_answer_available_still_leaves_out_what_other_calls_hold(live_server, held, page):
    sign_in(page, live_server.url, "holder")
    page.goto(f"{live_server.url}/chats/{held.pk}/")
    expect(page.locator("#available")).to_have_text("40.000000")

    page.fill("#id_content", "hello there")
    page.click("#send")
    expect(page.locator("#chat-status")).to_have_text("Answered.")

    try:
        state = wallet_state(user=held.owner)
        assert state.held == Decimal("10") and state.balance < Decimal("50")
        expect(page.locator("#available")).to_have_text(f"{state.available:f}")
    finally:
        connection.close()  # opened inside Playwright's greenlet: pytest-django would not close it
