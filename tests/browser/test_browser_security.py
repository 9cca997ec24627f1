"""In a real browser: the admin login locks out a guesser while a colleague logs in and unlocks; admin and docs run under the CSP."""

import pytest

from tests.browser.pages import admin_login, expect, run_action, shoot
from tests.factories import DEFAULT_PASSWORD, StaffUserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def page_from(browser, address: str, violations: list):
    """A browser "at" an address: one trusted proxy in front (TRUSTED_PROXY_COUNT=1) says where it came from."""
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": address})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return page


@pytest.fixture
def staff(settings):
    """Seeded before `browser`: ORM work inside Playwright's loop leaves a connection open (conftest.py)."""
    settings.TRUSTED_PROXY_COUNT = 1
    settings.THROTTLE_AUTH_RATE = "10/minute"
    return StaffUserFactory(username="ops"), StaffUserFactory(username="lead", is_superuser=True)


@pytest.mark.django_db(transaction=True)
def test_guesser_is_locked_out_while_a_colleague_logs_in_and_unlocks(live_server, settings, staff, browser):
    url = live_server.url
    violations = []
    guesser = page_from(browser, "203.0.113.66", violations)

    for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        admin_login(guesser, url, "ops", f"guess-{attempt}")
        expect(guesser.locator(".errornote")).to_be_visible()
    admin_login(guesser, url, "ops", "one-guess-too-many")
    expect(guesser.locator("#login-locked h1")).to_have_text("Login locked")
    shoot(guesser, "security-01-locked")
    admin_login(guesser, url, "ops", DEFAULT_PASSWORD)  # the right password does not help now
    expect(guesser.locator("#login-locked")).to_be_visible()

    colleague = page_from(browser, "198.51.100.7", violations)
    admin_login(colleague, url, "lead", DEFAULT_PASSWORD)
    expect(colleague.locator("#site-name")).to_be_visible()
    colleague.goto(f"{url}/admin/accounts/user/?q=ops")
    row = colleague.locator("#result_list tbody tr", has_text="ops")
    run_action(colleague, row, "unlock_admin_login")
    expect(colleague.locator(".messagelist .success")).to_have_text("Unlocked admin login for 1 user(s).")
    shoot(colleague, "security-02-unlocked")

    admin_login(guesser, url, "ops", DEFAULT_PASSWORD)
    expect(guesser.locator("#site-name")).to_be_visible()
    assert violations == []


@pytest.mark.django_db(transaction=True)
def test_admin_and_swagger_ui_work_under_the_content_security_policy(live_server, staff, browser):
    url = live_server.url
    violations = []
    page = page_from(browser, "198.51.100.8", violations)

    response = page.goto(f"{url}/api/v1/docs/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("creditdesk API")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    shoot(page, "security-03-docs-under-csp")

    admin_login(page, url, "lead", DEFAULT_PASSWORD)
    page.goto(f"{url}/admin/billing/wallet/")
    expect(page.locator("#result_list")).to_be_visible()
    page.goto(f"{url}/admin/accounts/user/")
    # The admin's own scripts (select-all, actions) run: they are files from this server.
    page.locator("#action-toggle").check()
    expect(page.locator(".action-counter")).to_contain_text("selected")
    assert violations == [], violations
