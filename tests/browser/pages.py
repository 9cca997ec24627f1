"""What the browser tests share besides fixtures: Playwright's `expect`, screenshots, the admin login and actions."""

from pathlib import Path

import pytest

from tests.factories import DEFAULT_PASSWORD

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="needs the playwright package (requirements-dev)"
)
expect = sync_api.expect

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def shoot(page, name: str):
    """The whole page, as test-artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page, url: str, username: str, password: str = DEFAULT_PASSWORD):
    """Sign in on the user's own pages as `username`; the caller checks where it landed."""
    page.goto(f"{url}/signin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


def admin_login(page, url: str, username: str, password: str = DEFAULT_PASSWORD):
    """Submit the admin login form as `username`; the caller checks where it landed."""
    page.goto(f"{url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")


def run_action(page, row, action: str):
    """Tick `row` of an admin change list and run the action named `action` on it."""
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")
