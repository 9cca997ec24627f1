"""The user's pages at a phone's width (390 px): nothing pushes the page sideways; wide tables scroll in place."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from accounts.keys import create_api_key
from sessions_app import files
from tests.browser.pages import expect, shoot, sign_in
from tests.factories import UserFactory, fund

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGES = ["/", "/keys/", "/files/", "/buy/", "/chats/"]


@pytest.fixture
def customer(db):
    user = UserFactory(username="phoebe")
    fund(user, "25")
    for n in range(4):
        create_api_key(user=user, name=f"key number {n} for a long-named integration", limit="5")
    name = "a-very-long-file-name-" + "x" * 200 + ".txt"
    files.upload_file(owner=user, uploaded=SimpleUploadedFile(name, b"notes", content_type="text/plain"))
    return user


@pytest.mark.django_db(transaction=True)
def test_the_pages_fit_a_phone(live_server, customer, page):
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, live_server.url, "phoebe")
    expect(page.locator("#balance")).to_be_visible()
    try:
        for path in PAGES:
            page.goto(f"{live_server.url}{path}")
            wide = page.evaluate("document.documentElement.scrollWidth")
            if wide > 390:
                shoot(page, f"phone{path.replace('/', '-')}")
            assert wide <= 390, f"{path} is {wide - 390} px wider than the phone"
    finally:
        connection.close()  # opened inside Playwright's greenlet: pytest-django would not close it
