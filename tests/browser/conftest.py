"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright.

The tests are skipped, with the reason, on a machine without that Chromium (CI installs it).
"""

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_runtest_setup(item):
    """Before any fixture (the live server, the seeded rows) is set up: no Chromium, no test."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Chromium at {CHROMIUM} (CI installs it)")


@pytest.fixture
def browser(monkeypatch):
    """A headless Chromium for one test; request it after the fixtures that seed rows.

    ORM work done inside Playwright's greenlet opens a connection that pytest-django never closes
    (PostgreSQL then refuses to drop the test database), so seed before the browser starts.
    """
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; Django would otherwise refuse
    # the ORM calls the test makes to seed and check data.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    """One page in a desktop-sized window, waiting at most 15 s for anything it expects."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()
