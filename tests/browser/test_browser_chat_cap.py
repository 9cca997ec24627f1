"""A chat message refused by the user's spending cap says so, in a real browser: not "out of credits"."""

from decimal import Decimal

import pytest
from django.db import connection

from billing.models import ModelPrice, SpendLimit
from billing.services import set_spend_cap
from sessions_app.models import Message
from tests.browser.pages import expect, shoot, sign_in
from tests.factories import ChatSessionFactory, UserFactory, fund

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def capped(db):
    # Transactional tests before this one may have flushed the migration's echo-1 price.
    ModelPrice.objects.get_or_create(
        model="echo-1", defaults={"input_price_per_1k": Decimal("0.5"), "output_price_per_1k": Decimal("1.5")}
    )
    user = UserFactory(username="cappy")
    fund(user, "50")
    set_spend_cap(user=user, kind=SpendLimit.Kind.USER_CAP, amount=Decimal("0"), period="day")
    return ChatSessionFactory(owner=user, title="Capped")


@pytest.mark.django_db(transaction=True)
def test_a_capped_message_shows_the_cap_and_keeps_the_text(live_server, capped, page):
    sign_in(page, live_server.url, "cappy")
    page.goto(f"{live_server.url}/chats/{capped.pk}/")
    page.fill("#id_content", "capped?")
    page.click("#send")

    expect(page.locator("#cap-reached")).to_be_visible()
    expect(page.locator("#cap-reached-detail")).to_contain_text("Your spending cap of 0.000000 credits")
    expect(page.locator("#cap-reached")).to_be_focused()
    expect(page.locator("#top-up")).to_be_hidden()
    expect(page.locator("#id_content")).to_have_value("capped?")
    shoot(page, "chat-cap-reached")
    try:
        assert not Message.objects.exists()
    finally:
        connection.close()  # opened inside Playwright's greenlet: pytest-django would not close it
