"""The product walked as people use it, in Chromium against uvicorn (so answers really stream):
a new user signs up, is refused under enforcement and shown the top-up prompt, support grants from the
console (credits that expire in 30 days), the answer streams in, the wallet and chart change and list
the granted lot with its expiry, a key is created (its secret shown once),
used and revoked, a spending cap is set; support finds the user by email, sees the lot and its expiry,
opens the debit behind the last turn, refunds it, and both sides see the refund. Screenshots go to docs/img/.
"""

import importlib
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps as global_apps
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import Group
from django.db import connection

from billing.models import CreditTransaction, ModelPrice
from sessions_app.models import Turn
from tests.browser.pages import admin_login, expect, shoot
from tests.factories import DEFAULT_PASSWORD, StaffUserFactory
from tests.live_server import uvicorn_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
PASSWORD = "a-long-pass-phrase-for-tests"
# Long enough that the echo model's answer comes in several pieces.
MESSAGE = "Hello! Tell me, in a few words, what you can do for me today, and how the credits work here."


def doc_shot(page, name: str):
    """A small screenshot for docs/support.md (the visible window only), and the full page as an artifact.

    docs/img/ is rewritten only when UPDATE_DOC_SCREENSHOTS=1 (or an image is missing), so a test run
    leaves the checkout clean: `UPDATE_DOC_SCREENSHOTS=1 make test PYTEST_ARGS=tests/browser` refreshes them.
    """
    target = DOCS_IMG / f"{name}.png"
    if os.environ.get("UPDATE_DOC_SCREENSHOTS") == "1" or not target.exists():
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target))
    shoot(page, name)


def server_env(**extra) -> dict[str, str]:
    return {
        # DEBUG serves the static files from the apps (WhiteNoise), as `make run` does; cookies over HTTP.
        "DEBUG": "true",
        "SECRET_KEY": "walk-test-not-a-secret",
        "CREDIT_ENFORCEMENT_ENABLED": "true",
        "STARTING_CREDITS": "0",
        "SIGNUP_ENABLED": "true",
        "LLM_PROVIDER": "echo",
        "LLM_ECHO_STREAM_DELAY_SECONDS": "0.3",  # slow enough to watch the answer arrive
        "THROTTLE_AUTH_RATE": "1000/minute",
        "THROTTLE_SIGNUP_RATE": "1000/minute",
        "LOG_LEVEL": "WARNING",
        "EMAIL_URL": "dummymail://",
        **extra,
    }


def seed_console():
    """What migrations put there and a transactional test's flush removed: the priced model, the groups."""
    ModelPrice.objects.get_or_create(
        model="echo-1", defaults={"input_price_per_1k": Decimal("0.5"), "output_price_per_1k": Decimal("1.5")}
    )
    importlib.import_module("billing.migrations.0004_support_group").create_support_group(global_apps, None)
    importlib.import_module("web.migrations.0002_console_groups").create_groups(global_apps, None)
    importlib.import_module("web.migrations.0003_console_groups_read_api_keys").add_view_apikey(
        global_apps, None
    )
    agent = StaffUserFactory(username="agent")
    # The server runs the deployed settings, whose hashers do not read the test run's fast MD5 hashes.
    agent.password = PBKDF2PasswordHasher().encode(DEFAULT_PASSWORD, "walk-test-salt")
    agent.save(update_fields=["password"])
    agent.groups.add(Group.objects.get(name="Support"))
    return agent


@pytest.fixture
def site(tmp_path):
    seed_console()
    with uvicorn_server(env=server_env(), log_dir=tmp_path) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def staff_page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_a_new_user_and_support_walk_the_product(site, page, staff_page):
    page.set_viewport_size({"width": 1280, "height": 860})

    # --- A new user signs up and sees zero credits. ---
    page.goto(f"{site}/")
    expect(page).to_have_url(f"{site}/signin/?next=/")
    page.click("text=Create an account")
    page.fill("#id_username", "newbie")
    page.fill("#id_email", "newbie@example.com")
    page.fill("#id_password", "12345678")
    page.click("button:has-text('Create account')")
    expect(page.locator("#id_password_error")).to_contain_text("entirely numeric")
    expect(page.locator("#id_email")).to_have_value("newbie@example.com")  # kept what was typed
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Create account')")
    expect(page.locator("#balance")).to_have_text("0.000000")
    expect(page.locator("#enforcement")).to_contain_text("refused until credits are added")
    doc_shot(page, "user-01-wallet-empty")

    # --- A message under enforcement: the top-up prompt, the text kept, nothing written. ---
    page.click("nav >> text=Chats")
    page.fill("#id_title", "First chat")
    page.click("button:has-text('Start chat')")
    page.fill("#id_content", MESSAGE)
    page.click("#send")
    expect(page.locator("#top-up")).to_be_visible()
    expect(page.locator("#top-up")).to_contain_text("You are out of credits")
    expect(page.locator("#id_content")).to_have_value(MESSAGE)
    doc_shot(page, "user-02-top-up-prompt")
    chat_url = page.url

    # --- Support finds the user by email in the console and grants credits. ---
    staff = staff_page
    admin_login(staff, site, "agent")
    expect(staff.locator("#site-name")).to_contain_text("creditdesk")
    doc_shot(staff, "console-01-index")
    staff.click("#content-main a:has-text('Customers')")
    staff.fill("#searchbar", "newbie@example.com")
    staff.press("#searchbar", "Enter")
    expect(staff.locator("#result_list tbody tr")).to_have_count(1)
    doc_shot(staff, "console-02-customer-search")
    staff.click("#result_list tbody tr th a")
    expect(staff.locator("h1")).to_contain_text("Customer newbie")
    staff.click("#link-grant")
    staff.fill("#id_amount", "25")
    staff.fill("#id_reason", "Welcome credits")
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(second=0, microsecond=0)
    staff.fill("#id_expires_at", expires.strftime("%Y-%m-%dT%H:%MZ"))
    staff.click("input[type=submit][value='Grant credits']")
    expect(staff.locator(".messagelist .success")).to_contain_text("Granted 25.000000 credits")

    # --- The user sends again (a double click sends once) and watches the answer stream in. ---
    page.goto(chat_url)
    page.fill("#id_content", MESSAGE)
    page.dblclick("#send")
    streaming = page.locator("li.turn.pending .msg.assistant .text")
    expect(streaming).not_to_be_empty()  # words on screen before the answer is done
    expect(page.locator("#chat-status")).to_have_text("Writing…")
    expect(page.locator("#chat-status")).to_have_text("Answered.")
    expect(page.locator("#id_content")).to_have_value("")
    expect(page.locator("#available")).not_to_have_text("25.000000")
    expect(page.locator("li.turn .usage")).to_contain_text("credits")
    doc_shot(page, "user-03-chat-answered")
    try:
        assert Turn.objects.filter(session__owner__username="newbie").count() == 1
    finally:
        connection.close()

    # --- The wallet shows the new balance, the grant by support, the debit, and today's bar. ---
    page.click("nav >> text=Wallet")
    expect(page.locator("#balance")).not_to_have_text("0.000000")
    expect(page.locator("#ledger")).to_contain_text("Welcome credits")
    expect(page.locator("#ledger")).to_contain_text("agent")
    expect(page.locator("#ledger tbody tr").first).to_contain_text("debit")
    today_bar = page.locator("#usage-chart rect.bar").last
    assert float(today_bar.get_attribute("height")) > 0
    # The granted lot, what is left of it, and when that expires (the server's time zone is UTC).
    expiry = expires.strftime("%Y-%m-%d %H:%M")
    granted_lot = page.locator("#lot-list tbody tr")
    expect(granted_lot).to_have_count(1)
    expect(granted_lot).to_contain_text("grant")
    expect(granted_lot).to_contain_text("promotional")
    expect(granted_lot).to_contain_text(expiry)
    expect(page.locator("#next-expiry")).to_contain_text(f"credits expire on {expiry}")
    doc_shot(page, "user-04-wallet-after")

    # --- An API key: created (a double click makes one), its secret shown once and working, then revoked. ---
    page.click("nav >> text=API keys")
    expect(page.locator("#key-list")).to_have_count(0)
    page.fill("#id_name", "My laptop")
    page.fill("#id_limit", "five")
    page.click("button:has-text('Create key')")
    expect(page.locator("#id_limit_error")).to_contain_text("valid number")
    expect(page.locator("#id_name")).to_have_value("My laptop")  # kept what was typed
    page.fill("#id_limit", "5")
    page.select_option("#id_limit_reset", "daily")
    page.dblclick("button:has-text('Create key')")
    expect(page.locator("#secret-warning")).to_contain_text("You will not see this key again")
    secret = page.locator("#new-key-secret").input_value()
    assert secret.startswith("cdk_")
    page.wait_for_load_state()  # keys.js has run (on a loaded machine the field can be focused before it)
    page.focus("#new-key-secret")  # selects the whole key, for Ctrl+C
    selected = page.evaluate(
        "() => [document.activeElement.selectionStart, document.activeElement.selectionEnd]"
    )
    assert selected == [0, len(secret)]
    doc_shot(page, "user-05-key-created")
    bearer = {"Authorization": f"Bearer {secret}"}
    answer = page.request.get(f"{site}/v1/key", headers=bearer)
    assert answer.status == 200 and answer.json()["data"]["name"] == "My laptop"
    page.click("text=I have copied it")
    expect(page.locator("#key-list tbody tr")).to_have_count(
        1
    )  # one key, though the button was clicked twice
    expect(page.locator("#key-list")).to_contain_text(secret[:12])
    expect(page.locator("#key-list")).not_to_contain_text(secret)
    doc_shot(page, "user-06-keys")
    page.click("#key-list >> text=Revoke…")
    expect(page.locator("h1")).to_contain_text("Revoke the key My laptop?")
    page.click("#confirm-revoke")
    expect(page.locator(".messages")).to_contain_text("Revoked the key My laptop")
    expect(page.locator("text=No keys yet.")).to_be_visible()
    assert page.request.get(f"{site}/v1/key", headers=bearer).status == 401

    # --- A spending cap of their own on the wallet page. ---
    page.click("nav >> text=Wallet")
    expect(page.locator("#own-cap")).to_contain_text("no cap of your own")
    page.fill("#id_spend_cap", "-1")
    page.click("#spend-cap-form button[type=submit]")
    expect(page.locator("#id_spend_cap_error")).to_be_visible()
    page.fill("#id_spend_cap", "2")
    page.select_option("#id_spend_cap_period", "day")
    page.click("#spend-cap-form button[type=submit]")
    expect(page.locator(".messages")).to_contain_text("Your spending cap is now 2.000000 credits per day")
    expect(page.locator("#own-cap")).to_contain_text("2.000000")
    page.locator("#spend-cap").scroll_into_view_if_needed()
    doc_shot(page, "user-07-spend-cap")

    # --- Support opens the debit behind the last turn and refunds it. ---
    staff.goto(f"{site}/admin/")
    staff.click("#content-main a:has-text('Customers')")
    staff.fill("#searchbar", "newbie@example.com")
    staff.press("#searchbar", "Enter")
    staff.click("#result_list tbody tr th a")
    expect(staff.locator("#wallet-balance")).not_to_have_text("25.000000")
    expect(staff.locator("#customer-keys")).to_contain_text("My laptop")  # revoked, still listed
    doc_shot(staff, "console-03-customer-page")
    expect(staff.locator("#customer-lots tbody tr")).to_have_count(1)
    expect(staff.locator("#customer-lots")).to_contain_text(expiry)
    expect(staff.locator("#lots-next-expiry")).to_contain_text(expiry)
    staff.locator("#lots").evaluate("section => section.scrollIntoView()")  # the section at the top
    doc_shot(staff, "console-07-customer-lots")
    staff.evaluate("() => window.scrollTo(0, 0)")
    debit_row = staff.locator("#customer-ledger tbody tr.kind-debit").first
    debit_row.locator("a.turn-link").click()
    expect(staff.locator("#turn-calls")).to_contain_text("chat")
    doc_shot(staff, "console-04-turn")
    staff.click("#refund-turn")
    expect(staff.locator("h1")).to_contain_text("Refund turn")
    staff.fill("#id_reason", "Answer was not useful")
    doc_shot(staff, "console-05-refund-form")
    staff.click("input[type=submit][value='Refund']")
    expect(staff.locator(".messagelist .success")).to_contain_text("ledger row(s) written")
    staff.click("#turn-customer")
    expect(staff.locator("#customer-ledger tbody tr").first).to_contain_text("refund")
    expect(staff.locator("#customer-ledger tbody tr").first).to_contain_text("Answer was not useful")
    expect(staff.locator("#wallet-balance")).to_have_text("25.000000")
    doc_shot(staff, "console-06-customer-after-refund")

    # --- The user sees the refund too, then signs out. ---
    page.reload()
    expect(page.locator("#ledger tbody tr").first).to_contain_text("refund")
    expect(page.locator("#ledger tbody tr").first).to_contain_text("agent")
    expect(page.locator("#balance")).to_have_text("25.000000")
    page.click("button:has-text('Sign out')")
    expect(page).to_have_url(f"{site}/signin/")
    page.goto(f"{site}/chats/")
    expect(page).to_have_url(f"{site}/signin/?next=/chats/")

    try:
        refund = CreditTransaction.objects.select_related("initiated_by").get(kind="refund")
        assert refund.initiated_by.username == "agent"
    finally:
        connection.close()


@pytest.fixture
def broken_site(tmp_path):
    """A server whose model provider does not answer: its streams end with an error event."""
    seed_console()
    dead = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
    env = server_env(
        CREDIT_ENFORCEMENT_ENABLED="false", LLM_PROVIDER="openai", LLM_BASE_URL=dead, LLM_API_KEY="none"
    )
    with uvicorn_server(env=env, log_dir=tmp_path) as port:
        yield f"http://127.0.0.1:{port}"


def test_a_stream_that_errors_is_shown_as_a_message_and_the_text_is_kept(broken_site, page):
    page.goto(f"{broken_site}/signup/")
    page.fill("#id_username", "unlucky")
    page.fill("#id_email", "unlucky@example.com")
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Create account')")
    page.goto(f"{broken_site}/chats/")
    page.click("button:has-text('Start chat')")
    page.fill("#id_content", "Are you there?")
    page.click("#send")
    expect(page.locator("#chat-error")).to_be_visible()
    expect(page.locator("#chat-error")).to_contain_text("nothing was charged")
    expect(page.locator("#id_content")).to_have_value("Are you there?")
    expect(page.locator("li.turn")).to_have_count(0)
    shoot(page, "user-stream-error")
