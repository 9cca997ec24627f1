"""A support agent's day in a real browser: log in, grant credits, read the ledger, read daily usage."""

import importlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps as global_apps
from django.contrib.auth.models import Group
from django.utils import timezone

from billing.models import LLMCallEvent
from tests.browser.pages import admin_login, expect, run_action, shoot
from tests.factories import LLMCallEventFactory, StaffUserFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def seeded(settings):
    """A support agent (the Support group from its migration), two customers, a week of calls."""
    settings.REPORT_TIME_ZONE = "UTC"
    # Transactional tests flush the database between tests; the migration's function recreates its rows.
    importlib.import_module("billing.migrations.0004_support_group").create_support_group(global_apps, None)
    agent = StaffUserFactory(username="agent")
    agent.groups.add(Group.objects.get(name="Support"))
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    now = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    for days_ago, user, cost in [
        (6, alice, "1.2"),
        (4, bob, "3.5"),
        (4, alice, "0.8"),
        (1, bob, "2.25"),
        (0, alice, "1"),
    ]:
        LLMCallEventFactory(user=user, cost=Decimal(cost), created_at=now - timedelta(days=days_ago))
    LLMCallEventFactory(
        user=bob, cost=0, status=LLMCallEvent.Status.ERROR, created_at=now - timedelta(days=1)
    )
    return {"agent": agent, "alice": alice, "bob": bob}


@pytest.mark.django_db(transaction=True)
def test_support_agent_grants_credits_then_reads_ledger_and_daily_usage(live_server, seeded, page):
    # `seeded` before `page`: ORM work done inside Playwright's greenlet opens a connection that
    # pytest-django never closes (PostgreSQL then refuses to drop the test database).
    url = live_server.url

    admin_login(page, url, "agent")
    expect(page.locator("#site-name")).to_be_visible()
    expect(page.get_by_role("link", name="Daily usage")).to_be_visible()
    shoot(page, "01-admin-index")

    # The wallet list: select alice, run "Grant credits…".
    page.goto(f"{url}/admin/billing/wallet/")
    alice_row = page.locator("#result_list tbody tr", has_text="alice@example.com")
    expect(alice_row).to_contain_text("0.000000")
    expect(alice_row.locator(".low-balance")).to_have_count(1)
    shoot(page, "02-wallet-list")
    run_action(page, alice_row, "grant_credits")

    # The intermediate form.
    expect(page.locator("h1")).to_have_text("Grant credits")
    expect(page.locator("#grant-wallets")).to_contain_text("alice")
    page.fill("#id_amount", "1e3")
    page.fill("#id_reason", "Outage compensation")
    page.click("input[type=submit][value='Grant credits']")
    expect(page.locator(".errorlist")).to_contain_text("no exponent")
    shoot(page, "03-grant-form-error")
    page.fill("#id_amount", "25")
    shoot(page, "04-grant-form")
    page.click("input[type=submit][value='Grant credits']")

    # Back on the list: the message and the new balance.
    expect(page.locator(".messagelist .success")).to_have_text("Granted 25.000000 credits to 1 wallet.")
    alice_row = page.locator("#result_list tbody tr", has_text="alice@example.com")
    expect(alice_row).to_contain_text("25.000000")
    expect(alice_row.locator(".low-balance")).to_have_count(0)
    expect(page.locator("#result_list tbody tr", has_text="bob@example.com")).to_contain_text("0.000000")
    shoot(page, "05-wallet-list-after-grant")

    # The wallet's page: its ledger names the agent.
    alice_row.locator("th a").click()
    ledger = page.locator("#ledger-table tbody tr")
    expect(ledger).to_have_count(1)
    expect(ledger.first).to_contain_text("agent")
    expect(ledger.first).to_contain_text("Outage compensation")
    expect(page.locator("input[name=_save]")).to_have_count(0)
    shoot(page, "06-wallet-page")

    # The full ledger: the same row, with the agent as initiator and no way to add or edit.
    page.get_by_role("link", name="Full ledger").click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("agent")
    expect(rows.first).to_contain_text("25.000000")
    expect(page.locator("a.addlink")).to_have_count(0)
    expect(page.locator("select[name=action] option[value=export_ledger_csv]")).to_have_count(1)
    shoot(page, "07-ledger")

    # Daily usage: a bar per day, the rows with events, and the totals.
    page.goto(f"{url}/admin/reporting/dailyusage/")
    expect(page.locator("h1")).to_have_text("Daily usage")
    assert page.locator("#usage-chart rect").count() > 0
    expect(page.locator("#usage-table tr.usage-row")).to_have_count(4)
    expect(page.locator("#usage-totals")).to_contain_text("8.750000")
    expect(page.locator("#usage-totals")).to_contain_text("Total")
    shoot(page, "08-daily-usage")

    page.get_by_role("link", name="Week", exact=True).click()
    expect(page.locator("#bucket-switch a.selected")).to_have_text("Week")
    expect(page.locator("#usage-totals")).to_contain_text("8.750000")
    assert page.locator("#usage-chart rect").count() > 0
    shoot(page, "09-daily-usage-by-week")

    page.goto(f"{url}/admin/reporting/dailyusage/?start=2026-99-01&bucket=fortnight")
    expect(page.locator(".messagelist .error")).to_contain_text("The report could not be shown")
    shoot(page, "10-daily-usage-bad-params")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "operation"),
    [("/api/v1/docs/", ".opblock"), ("/api/v1/redoc/", "[data-section-id^='operation/']")],
)
def test_interactive_docs_render_offline_and_list_every_operation(live_server, page, path, operation):
    # The docs' scripts and styles come from this server (drf-spectacular-sidecar): any other host is
    # cut off here, as on a machine without internet.
    from drf_spectacular.generators import SchemaGenerator

    outside = []

    def offline(route):
        if route.request.url.startswith(live_server.url):
            return route.continue_()
        outside.append((route.request.resource_type, route.request.url))
        return route.abort()

    page.context.route("**/*", offline)
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = sum(len(methods) for methods in schema["paths"].values())

    page.goto(f"{live_server.url}{path}")

    expect(page.locator(operation)).to_have_count(operations)
    expect(page.get_by_text("/api/v1/sessions/{session_pk}/turns/").first).to_be_attached()
    # Redoc asks for its own logo, and renders fine without it; nothing else (scripts, styles, fonts,
    # the schema) comes from anywhere but this server (templates/api/redoc.html drops the web fonts).
    needed = [(kind, url) for kind, url in outside if kind != "image"]
    assert needed == []
    if "docs" in path:
        assert outside == []
    shoot(page, "11-swagger-ui" if "docs" in path else "12-redoc")
