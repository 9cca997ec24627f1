"""Every user page and console page answers in a pinned number of queries, the same with 3 rows as with 30.

Each page is built for a customer with `n` of the rows it lists (ledger rows, credit lots, purchases, chats,
turns, files, keys),
requested once to warm what a running process caches (content types), then counted at n=3 and n=30:
equal counts show nothing is read per row, and the pin catches a query added to the page.
The times at the bench's 1M rows are bench/bench_pages.py's (docs/performance.md).
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import keys
from billing import services
from billing.models import ModelPrice, Purchase
from sessions_app import files
from sessions_app.models import ChatSession, Turn
from sessions_app.services import take_turn
from tests.factories import ChatSessionFactory, StaffUserFactory, UserFactory, fund

pytestmark = pytest.mark.django_db


def ledger_rows(user, n):
    price = ModelPrice.objects.get(model="echo-1")
    staff = StaffUserFactory()
    for i in range(n):
        if i % 2:
            services.charge(user=user, price=price, provider="echo", input_tokens=10, output_tokens=10)
        else:
            services.grant(user=user, amount="1", reason=f"grant {i}", initiated_by=staff)


def lots(user, n):
    """n live lots (more than the pages show at n=30), a third of them expiring, and a debt first paid."""
    staff = StaffUserFactory()
    price = ModelPrice.objects.get(model="echo-1")
    services.charge(user=user, price=price, provider="echo", input_tokens=10, output_tokens=10)
    for i in range(n):
        expires = timezone.now() + timedelta(days=i + 1) if i % 3 == 0 else None
        services.grant(user=user, amount="2", reason=f"lot {i}", initiated_by=staff, expires_at=expires)


def purchases(user, n):
    for i in range(n):
        Purchase.objects.create(
            user=user,
            credits=10 + i,
            amount=Decimal("0.1"),
            currency="usd",
            stripe_session_id=f"cs_{user.pk}_{i}",
        )


def chats(user, n):
    for i in range(n):
        ChatSessionFactory(owner=user, title=f"chat {i}")


def turns(user, n):
    fund(user, "500")
    session = ChatSessionFactory(owner=user, title="busy")
    for i in range(n):
        take_turn(session=session, user=user, content="please search for budget" if i % 3 == 0 else f"hi {i}")
    return session


def uploads(user, n):
    for i in range(n):
        files.upload_file(
            owner=user, uploaded=SimpleUploadedFile(f"f{i}.txt", b"words", content_type="text/plain")
        )


def api_keys(user, n):
    for i in range(n):
        key, _ = keys.create_api_key(user=user, name=f"key {i}", limit=Decimal(5), limit_reset="daily")
        if i % 4 == 0:
            keys.revoke_api_key(key=key)


def everything(user, n):
    """The customer page's rows: ledger, credit lots, purchases, turns (with their calls and tool runs), keys."""
    ledger_rows(user, n)
    lots(user, n)
    purchases(user, n)
    turns(user, n)
    api_keys(user, n)


def count(client, url) -> int:
    client.get(url)  # warm: content types, as in a running server
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(captured.captured_queries)


def customer_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def boss_client() -> Client:
    client = Client()
    client.force_login(StaffUserFactory(is_superuser=True))
    return client


# (page, rows it lists, its URL for the customer, who looks, the pinned count, what the queries are)
USER_PAGES = [
    (
        "wallet",
        ledger_rows,
        lambda user: "/",
        8,
        "session, user, wallet with caps, wallet state, first lots (counted), next expiry, ledger page, usage",
    ),
    (
        "wallet-lots",
        lots,
        lambda user: "/",
        8,
        "as the wallet's: the lots shown are the first 20, the rest counted in the same query",
    ),
    ("chats", chats, lambda user: "/chats/", 5, "session, user, models (form), count, page"),
    (
        "chat",
        turns,
        lambda user: f"/chats/{ChatSession.objects.get(owner=user).pk}/",
        7,
        "session, user, chat, turns, their calls, their tool runs, wallet",
    ),
    ("files", uploads, lambda user: "/files/", 4, "session, user, count, page"),
    ("keys", api_keys, lambda user: "/keys/", 4, "session, user, count, page (limits joined)"),
]


@pytest.mark.parametrize(
    ("name", "rows", "url", "pinned", "what"), USER_PAGES, ids=[p[0] for p in USER_PAGES]
)
def test_a_user_page_reads_the_same_queries_for_3_rows_as_for_30(name, rows, url, pinned, what):
    counts = {}
    for n in (3, 30):
        user = UserFactory()
        rows(user, n)
        counts[n] = count(customer_client(user), url(user))
    assert counts[3] == counts[30] == pinned, (name, counts, what)


def last_turn_url(user) -> str:
    turn = Turn.objects.filter(session__owner=user).order_by("-id").first()
    return f"/admin/sessions_app/turn/{turn.pk}/change/"


CONSOLE_PAGES = [
    (
        "customer",
        everything,
        lambda user: f"/admin/web/customer/{user.pk}/change/",
        15,
        "session, staff, customer with wallet, its caps, first lots (counted), next expiry, purchases, "
        "ledger, turns of its calls, sessions, turns, keys, notifications, tokens, staff actions",
    ),
    (
        "turn",
        turns,
        last_turn_url,
        6,
        "session, staff, turn with its messages, its calls, tool runs, their debits",
    ),
    (
        "ledger",
        ledger_rows,
        lambda user: f"/admin/billing/credittransaction/?wallet={user.wallet.pk}",
        4,
        "session, staff, a bounded count, the page (wallet, user, initiator joined)",
    ),
    (
        "ledger-all",
        ledger_rows,
        lambda user: "/admin/billing/credittransaction/",
        4,
        "as the wallet's ledger",
    ),
]


@pytest.mark.parametrize(
    ("name", "rows", "url", "pinned", "what"), CONSOLE_PAGES, ids=[p[0] for p in CONSOLE_PAGES]
)
def test_a_console_page_reads_the_same_queries_for_3_rows_as_for_30(name, rows, url, pinned, what):
    boss = boss_client()
    counts = {}
    for n in (3, 30):
        user = UserFactory()
        rows(user, n)
        counts[n] = count(boss, url(user))
    assert counts[3] == counts[30] == pinned, (name, counts, what)


def test_the_ledger_changelist_past_the_exact_count_adds_one_estimate_not_a_count(monkeypatch):
    """Past EXACT_COUNT_LIMIT rows the paginator asks the planner (one EXPLAIN), never COUNT(*)s the table."""
    monkeypatch.setattr("core.paginators.EXACT_COUNT_LIMIT", 10)
    boss = boss_client()
    user = UserFactory()
    ledger_rows(user, 30)
    url = f"/admin/billing/credittransaction/?wallet={user.wallet.pk}"
    boss.get(url)
    with CaptureQueriesContext(connection) as captured:
        assert boss.get(url).status_code == 200
    sql = [q["sql"] for q in captured.captured_queries]
    assert len(sql) == 5 and sum(s.startswith("EXPLAIN") for s in sql) == 1
