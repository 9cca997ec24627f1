"""Who may see what: every URL pattern of the project, walked from the resolver, against one table.

A pattern the table does not name fails `test_every_url_pattern_has_a_row`, so a new endpoint (or a
newly registered admin model) cannot ship without someone deciding who may reach it.
"""

from decimal import Decimal

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from procrastinate.contrib.django.models import ProcrastinateJob

from accounts.keys import create_api_key
from billing import services
from billing.models import (
    Allowance,
    AllowanceIssue,
    CreditLot,
    CreditTransaction,
    LLMCallEvent,
    ModelPrice,
    Purchase,
    WalletEvent,
)
from billing.services.allowances import issue_allowances
from notifications.models import Delivery
from sessions_app import files
from sessions_app.models import SessionSummary, ToolCallEvent
from sessions_app.services import take_turn
from tests.factories import ChatSessionFactory, StaffUserFactory, UserFactory, api_token

ROLES = ("anonymous", "user", "other", "staff")


def walk(resolver=None, prefix=""):
    """Every URL pattern as its full route string, recursively through includes (the admin's too)."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


def S(anonymous, user, other, staff):  # noqa: N802 - reads as a table row
    return {"anonymous": anonymous, "user": user, "other": other, "staff": staff}


# Statuses: anonymous; "user" owns the objects in the URL; "other" is another ordinary user; "staff"
# is a superuser (admin pages need model permissions, which tests/billing/test_admin.py covers by role).
API_STAFF = S(401, 403, 403, 200)
ADMIN_LOGIN = S(302, 302, 302, 200)  # not staff: sent to the admin login page
ADMIN_REFUSED = S(302, 302, 302, 403)  # the ledger, events and holds: no add/change/delete, even for staff


def _model_admin(model: str, *, add=ADMIN_LOGIN, change=ADMIN_LOGIN, delete=ADMIN_LOGIN, extra=()):
    """The six URL patterns of a registered ModelAdmin, each with its placeholder object."""
    base = f"admin/{model.replace('.', '/')}/"
    obj = "{" + model.split(".")[1] + "}"
    return [
        (base, "get", f"/{base}", ADMIN_LOGIN),
        (base + "add/", "get", f"/{base}add/", add),
        (base + "<path:object_id>/history/", "get", f"/{base}{obj}/history/", ADMIN_LOGIN),
        (base + "<path:object_id>/delete/", "get", f"/{base}{obj}/delete/", delete),
        (base + "<path:object_id>/change/", "get", f"/{base}{obj}/change/", change),
        # The bare object URL redirects to its change page, for anyone (the change page then decides).
        (base + "<path:object_id>/", "get", f"/{base}{obj}/", S(302, 302, 302, 302)),
        *extra,
    ]


# (route as the resolver spells it, method, URL with {placeholders}, expected status per role)
TABLE = [
    # --- Django admin -------------------------------------------------------------------------
    ("admin/", "get", "/admin/", ADMIN_LOGIN),
    ("admin/login/", "get", "/admin/login/", S(200, 200, 200, 302)),
    ("admin/logout/", "post", "/admin/logout/", S(302, 302, 302, 200)),
    ("admin/password_change/", "get", "/admin/password_change/", ADMIN_LOGIN),
    ("admin/password_change/done/", "get", "/admin/password_change/done/", ADMIN_LOGIN),
    ("admin/autocomplete/", "get", "/admin/autocomplete/", S(302, 302, 302, 403)),
    ("admin/jsi18n/", "get", "/admin/jsi18n/", ADMIN_LOGIN),
    # contenttypes' shortcut, behind the admin login: no model here has get_absolute_url, so staff get 404.
    (
        "admin/r/<path:content_type_id>/<path:object_id>/",
        "get",
        "/admin/r/{ct}/{wallet}/",
        S(302, 302, 302, 404),
    ),
    *_model_admin("auth.group"),
    # API tokens: listed and revoked (deleted), never added or edited here; no key is shown.
    *_model_admin("knox.authtoken", add=ADMIN_REFUSED),
    # Admin login attempts (django-axes): staff read them and unlock by deleting an attempt.
    *_model_admin("axes.accessattempt", add=ADMIN_REFUSED),
    *_model_admin("axes.accesslog", add=ADMIN_REFUSED),
    *_model_admin("axes.accessfailurelog", add=ADMIN_REFUSED),
    # The gateway's API keys: listed, read and revoked (an action) by staff; created by their owners only.
    *_model_admin(
        "accounts.apikey",
        add=ADMIN_REFUSED,
        delete=ADMIN_REFUSED,
        extra=[
            # "Revoke this key…": asks on GET, revokes on the confirming POST (change permission).
            (
                "admin/accounts/apikey/<path:object_id>/revoke/",
                "get",
                "/admin/accounts/apikey/{apikey}/revoke/",
                ADMIN_LOGIN,
            ),
        ],
    ),
    *_model_admin(
        "accounts.user",
        extra=[
            (
                "admin/accounts/user/<id>/password/",
                "get",
                "/admin/accounts/user/{user}/password/",
                ADMIN_LOGIN,
            ),
        ],
    ),
    *_model_admin(
        "billing.wallet",
        add=ADMIN_REFUSED,
        delete=ADMIN_REFUSED,
        extra=[
            (
                "admin/billing/wallet/<path:object_id>/grant/",
                "get",
                "/admin/billing/wallet/{wallet}/grant/",
                ADMIN_LOGIN,
            ),
        ],
    ),
    *_model_admin("billing.credittransaction", add=ADMIN_REFUSED, delete=ADMIN_REFUSED),
    # Credit lots and purchases: view-only (written by billing's services and the Stripe webhook).
    *_model_admin("billing.creditlot", add=ADMIN_REFUSED, delete=ADMIN_REFUSED),
    *_model_admin("billing.purchase", add=ADMIN_REFUSED, delete=ADMIN_REFUSED),
    # Recurring allowances: defined, assigned and removed by staff; their issues view-only (the job's).
    *_model_admin("billing.allowance"),
    *_model_admin("billing.allowanceissue", add=ADMIN_REFUSED, delete=ADMIN_REFUSED),
    *_model_admin("billing.llmcallevent", add=ADMIN_REFUSED, delete=ADMIN_REFUSED),
    *_model_admin("billing.modelprice", delete=ADMIN_REFUSED),
    *_model_admin("billing.credithold", add=ADMIN_REFUSED, delete=ADMIN_REFUSED),
    # Wallet crossings and their deliveries: view-only (written by billing and the worker).
    *_model_admin("billing.walletevent", add=ADMIN_REFUSED, delete=ADMIN_REFUSED),
    *_model_admin("notifications.delivery", add=ADMIN_REFUSED, delete=ADMIN_REFUSED),
    # The task queue's jobs (procrastinate's own read-only admin).
    *_model_admin("procrastinate.procrastinatejob", add=ADMIN_REFUSED, delete=ADMIN_REFUSED),
    # The conversation's records: view-only (no add, change or delete), for staff too.
    *_model_admin("sessions_app.toolcallevent", add=ADMIN_REFUSED, delete=ADMIN_REFUSED),
    *_model_admin("sessions_app.userfile", add=ADMIN_REFUSED, delete=ADMIN_REFUSED),
    *_model_admin("sessions_app.sessionsummary", add=ADMIN_REFUSED, delete=ADMIN_REFUSED),
    *_model_admin("sessions_app.chatsession", add=ADMIN_REFUSED, delete=ADMIN_REFUSED),
    *_model_admin(
        "sessions_app.turn",
        add=ADMIN_REFUSED,
        delete=ADMIN_REFUSED,
        extra=[
            # "Refund this turn…": billing's refund form for the turn's debits (grant permission).
            (
                "admin/sessions_app/turn/<path:object_id>/refund/",
                "get",
                "/admin/sessions_app/turn/{turn}/refund/",
                ADMIN_LOGIN,
            ),
        ],
    ),
    # The customer page (a proxy of the user): read-only, every money action links to billing's forms.
    *_model_admin("web.customer", add=ADMIN_REFUSED, delete=ADMIN_REFUSED),
    ("admin/reporting/dailyusage/", "get", "/admin/reporting/dailyusage/", ADMIN_LOGIN),
    (
        "admin/^(?P<app_label>auth|axes|procrastinate|accounts|knox|billing|sessions_app|reporting|notifications|web)/$",
        "get",
        "/admin/billing/",
        ADMIN_LOGIN,
    ),
    # Unknown admin URLs: login first, then a 404 (never a hint to anonymous users what exists).
    ("admin/(?P<url>.*)$", "get", "/admin/no/such/page/", S(302, 302, 302, 404)),
    # --- API: open -----------------------------------------------------------------------------
    ("api/v1/^schema/?$", "get", "/api/v1/schema/", S(200, 200, 200, 200)),
    ("api/v1/^docs/?$", "get", "/api/v1/docs/", S(200, 200, 200, 200)),
    ("api/v1/^redoc/?$", "get", "/api/v1/redoc/", S(200, 200, 200, 200)),
    ("api/v1/^health/?$", "get", "/api/v1/health", S(200, 200, 200, 200)),
    # What the API and the gateway do not route: their JSON 404, for anyone.
    ("^(api/|v1(/|$))", "get", "/api/v1/nowhere/", S(404, 404, 404, 404)),
    ("api/v1/^auth/register/?$", "post", "/api/v1/auth/register", S(400, 400, 400, 400)),
    ("api/v1/^auth/token/?$", "post", "/api/v1/auth/token", S(400, 400, 400, 400)),
    ("api/v1/^auth/logout/?$", "post", "/api/v1/auth/logout", S(401, 204, 204, 204)),
    ("api/v1/^auth/logout-all/?$", "post", "/api/v1/auth/logout-all", S(401, 204, 204, 204)),
    # --- API: the caller's own ---------------------------------------------------------------
    ("api/v1/^auth/me/?$", "get", "/api/v1/auth/me", S(401, 200, 200, 200)),
    ("api/v1/^users/me/wallet/?$", "get", "/api/v1/users/me/wallet", S(401, 200, 200, 200)),
    ("api/v1/^users/me/transactions/?$", "get", "/api/v1/users/me/transactions", S(401, 200, 200, 200)),
    ("api/v1/^users/me/usage/?$", "get", "/api/v1/users/me/usage", S(401, 200, 200, 200)),
    ("api/v1/^users/me/keys/?$", "get", "/api/v1/users/me/keys", S(401, 200, 200, 200)),
    ("api/v1/^users/me/keys/?$", "post", "/api/v1/users/me/keys", S(401, 201, 201, 201)),
    (
        "api/v1/^users/me/keys/(?P<pk>[0-9]{1,18})/?$",
        "get",
        "/api/v1/users/me/keys/{apikey}",
        S(401, 200, 404, 404),
    ),
    (
        "api/v1/^users/me/keys/(?P<pk>[0-9]{1,18})/?$",
        "patch",
        "/api/v1/users/me/keys/{apikey}",
        S(401, 200, 404, 404),
    ),
    (
        "api/v1/^users/me/keys/(?P<pk>[0-9]{1,18})/?$",
        "delete",
        "/api/v1/users/me/keys/{apikey}",
        S(401, 204, 404, 404),
    ),
    (
        "api/v1/^admin/wallets/(?P<user_id>[0-9]+)/spend-cap/?$",
        "post",
        "/api/v1/admin/wallets/{user}/spend-cap",
        API_STAFF,
    ),
    # --- The OpenAI-compatible gateway: each role with its own API key (anonymous: none) ----------
    ("v1/^models/?$", "get", "/v1/models", S(401, 200, 200, 200)),
    ("v1/^models/(?P<model>[^\\x00]{1,100}?)/?$", "get", "/v1/models/echo-1", S(401, 200, 200, 200)),
    ("v1/^key/?$", "get", "/v1/key", S(401, 200, 200, 200)),
    ("v1/^chat/completions/?$", "post", "/v1/chat/completions", S(401, 200, 200, 200)),
    ("api/v1/^sessions/?$", "get", "/api/v1/sessions/", S(401, 200, 200, 200)),
    ("api/v1/^sessions/?$", "post", "/api/v1/sessions/", S(401, 201, 201, 201)),
    # Another user's session is 404, never 403 (staff included: sessions are private).
    ("api/v1/^sessions/(?P<pk>[0-9]+)/?$", "get", "/api/v1/sessions/{session}/", S(401, 200, 404, 404)),
    ("api/v1/^sessions/(?P<pk>[0-9]+)/?$", "patch", "/api/v1/sessions/{session}/", S(401, 200, 404, 404)),
    ("api/v1/^sessions/(?P<pk>[0-9]+)/?$", "delete", "/api/v1/sessions/{session}/", S(401, 204, 404, 404)),
    (
        "api/v1/^sessions/(?P<session_pk>[0-9]+)/turns/?$",
        "get",
        "/api/v1/sessions/{session}/turns/",
        S(401, 200, 404, 404),
    ),
    (
        "api/v1/^sessions/(?P<session_pk>[0-9]+)/turns/?$",
        "post",
        "/api/v1/sessions/{session}/turns/",
        S(401, 201, 404, 404),
    ),
    # The user's files: another user's (staff included) is 404. The upload is multipart: the table's
    # JSON body is 415 for whoever may upload (tests/sessions_app/test_files_api.py uploads for real).
    ("api/v1/^files/?$", "get", "/api/v1/files/", S(401, 200, 200, 200)),
    ("api/v1/^files/?$", "post", "/api/v1/files/", S(401, 415, 415, 415)),
    ("api/v1/^files/(?P<pk>[0-9]+)/?$", "get", "/api/v1/files/{userfile}/", S(401, 200, 404, 404)),
    ("api/v1/^files/(?P<pk>[0-9]+)/?$", "delete", "/api/v1/files/{userfile}/", S(401, 204, 404, 404)),
    (
        "api/v1/^files/(?P<pk>[0-9]+)/content/?$",
        "get",
        "/api/v1/files/{userfile}/content",
        S(401, 200, 404, 404),
    ),
    # --- API: staff only -----------------------------------------------------------------------
    ("api/v1/^admin/wallets/(?P<user_id>[0-9]+)/?$", "get", "/api/v1/admin/wallets/{user}", API_STAFF),
    ("api/v1/^admin/wallets/(?P<user_id>[0-9]+)/?$", "patch", "/api/v1/admin/wallets/{user}", API_STAFF),
    (
        "api/v1/^admin/wallets/(?P<user_id>[0-9]+)/grant/?$",
        "post",
        "/api/v1/admin/wallets/{user}/grant",
        API_STAFF,
    ),
    ("api/v1/^admin/pricing/?$", "get", "/api/v1/admin/pricing/", API_STAFF),
    ("api/v1/^admin/pricing/?$", "post", "/api/v1/admin/pricing/", S(401, 403, 403, 201)),
    ("api/v1/^admin/pricing/(?P<model>.+?)/?$", "get", "/api/v1/admin/pricing/echo-1/", API_STAFF),
    ("api/v1/^admin/pricing/(?P<model>.+?)/?$", "patch", "/api/v1/admin/pricing/echo-1/", API_STAFF),
    (
        "api/v1/^admin/wallets/(?P<user_id>[0-9]+)/adjust/?$",
        "post",
        "/api/v1/admin/wallets/{user}/adjust",
        API_STAFF,
    ),
    (
        "api/v1/^admin/transactions/(?P<transaction_id>[0-9]+)/refund/?$",
        "post",
        "/api/v1/admin/transactions/{debit}/refund",
        API_STAFF,
    ),
    ("api/v1/^admin/usage/summary/?$", "get", "/api/v1/admin/usage/summary", API_STAFF),
    # Purchases: the caller's own; another user's is 404. Without STRIPE_API_KEY buying is 503 for all.
    ("api/v1/^users/me/purchases/?$", "get", "/api/v1/users/me/purchases", S(401, 200, 200, 200)),
    ("api/v1/^users/me/purchases/?$", "post", "/api/v1/users/me/purchases", S(401, 503, 503, 503)),
    (
        "api/v1/^users/me/purchases/(?P<pk>[0-9]{1,18})/?$",
        "get",
        "/api/v1/users/me/purchases/{purchase}",
        S(401, 200, 404, 404),
    ),
    # Stripe's webhook takes no session or token: its signature is the authentication (400 without one).
    ("api/v1/^payments/stripe/webhook/?$", "post", "/api/v1/payments/stripe/webhook", S(400, 400, 400, 400)),
    ("api/v1/^admin/transactions/export\\.csv/?$", "get", "/api/v1/admin/transactions/export.csv", API_STAFF),
    # --- The user's own pages (web/): signed out, sent to sign in; another user's objects are 404 ----
    ("", "get", "/", S(302, 200, 200, 200)),
    ("signin/", "get", "/signin/", S(200, 302, 302, 302)),  # signed in already: on to the wallet
    ("signout/", "post", "/signout/", S(302, 302, 302, 302)),
    ("signup/", "get", "/signup/", S(200, 302, 302, 302)),
    ("chats/", "get", "/chats/", S(302, 200, 200, 200)),
    ("chats/<int:pk>/", "get", "/chats/{session}/", S(302, 200, 404, 404)),
    ("files/", "get", "/files/", S(302, 200, 200, 200)),
    ("files/<int:pk>/delete/", "post", "/files/{userfile}/delete/", S(302, 302, 404, 404)),
    # Each signed-in role reaches its own wallet page (the JSON body is no form: its field errors show).
    ("cap/", "post", "/cap/", S(302, 200, 200, 200)),
    ("figures/", "get", "/figures/", S(302, 200, 200, 200)),  # each signed-in role's own wallet
    ("buy/", "get", "/buy/", S(302, 200, 200, 200)),
    ("buy/<int:pk>/checkout/", "get", "/buy/{purchase}/checkout/", S(302, 200, 404, 404)),
    ("keys/", "get", "/keys/", S(302, 200, 200, 200)),
    ("keys/<int:pk>/", "get", "/keys/{apikey}/", S(302, 200, 404, 404)),
    (
        "keys/<int:pk>/revoke/",
        "get",
        "/keys/{apikey}/revoke/",
        S(302, 200, 404, 404),
    ),  # asks; revokes nothing
]

# A body that the endpoint accepts from whoever may call it, so a status says "who", not "what".
BODIES = {
    ("post", "/api/v1/auth/register"): {"username": "", "password": ""},  # 400 for all: open, validated
    ("post", "/api/v1/auth/token"): {"username": "nobody", "password": "wrong"},
    ("post", "/api/v1/sessions/"): {"title": "t"},
    ("patch", "/api/v1/sessions/{session}/"): {"title": "renamed"},
    ("post", "/api/v1/sessions/{session}/turns/"): {"content": "hello"},
    ("post", "/api/v1/users/me/keys"): {"name": "access"},
    ("patch", "/api/v1/users/me/keys/{apikey}"): {"name": "renamed"},
    ("post", "/api/v1/admin/wallets/{user}/spend-cap"): {"spend_cap": "5", "spend_cap_period": "day"},
    ("post", "/v1/chat/completions"): {"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]},
    ("patch", "/api/v1/admin/wallets/{user}"): {"enforcement": "exempt"},
    ("post", "/api/v1/admin/wallets/{user}/grant"): {"amount": "5", "reason": "access table"},
    ("post", "/api/v1/admin/wallets/{user}/adjust"): {"amount": "-0.5", "reason": "access table"},
    ("post", "/api/v1/admin/transactions/{debit}/refund"): {"amount": "0.000001", "reason": "access table"},
    ("post", "/api/v1/admin/pricing/"): {
        "model": "access-model",
        "input_price_per_1k": "0.1",
        "output_price_per_1k": "0.2",
    },
    ("patch", "/api/v1/admin/pricing/echo-1/"): {"active": True},
}


def test_every_url_pattern_has_a_row():
    routes = set(walk())
    named = {row[0] for row in TABLE}

    assert routes - named == set(), "URL patterns without a row in TABLE: decide who may reach them"
    assert named - routes == set(), "rows in TABLE for URL patterns that no longer exist"


@pytest.fixture
def world(db, settings):
    # The webhook's signature is its authentication: with a secret set, an unsigned event is 400 for anyone.
    settings.STRIPE_WEBHOOK_SECRET = "whsec_access_table"
    staff = StaffUserFactory(is_superuser=True)
    user, other = UserFactory(), UserFactory()
    services.grant(user=user, amount=Decimal("10"), reason="seed", initiated_by=staff)
    session = ChatSessionFactory(owner=user)
    price = ModelPrice.objects.get(model="echo-1")
    services.charge(user=user, price=price, provider="echo", input_tokens=10, output_tokens=10)
    hold = services.reserve(user=user, amount=Decimal("1")).hold
    debit = CreditTransaction.objects.get(wallet=user.wallet, kind=CreditTransaction.Kind.DEBIT)
    # Down to below LOW_BALANCE_THRESHOLD: a wallet event, and its delivery job on the queue.
    services.adjust(user=user, amount=Decimal("-9.5"), reason="access table", initiated_by=staff)
    event = WalletEvent.objects.get(wallet=user.wallet)
    delivery = Delivery.objects.create(event=event, channel=Delivery.Channel.EMAIL)
    group = Group.objects.create(name="access-table")
    api_token(user)
    seen = {"user_agent": "test", "http_accept": "*/*", "path_info": "/admin/login/"}
    token = user.auth_token_set.get()
    upload = SimpleUploadedFile("notes.txt", b"search me", content_type="text/plain")
    user_file = files.upload_file(owner=user, uploaded=upload)
    turn = take_turn(session=session, user=user, content="search for notes").turn
    summary = SessionSummary.objects.create(
        session=session,
        text="t",
        covers_turns=1,
        covers_messages=2,
        llm_call=LLMCallEvent.objects.filter(turn_call__isnull=True).first(),
    )
    issued = Allowance.objects.create(name="access table, issued", credits=Decimal("1"), period="month")
    issued.users.add(other)
    issue_allowances()
    return {
        "users": {"user": user, "other": other, "staff": staff},
        "ids": {
            "user": user.pk,
            "wallet": user.wallet.pk,
            "session": session.pk,
            "credittransaction": CreditTransaction.objects.filter(wallet=user.wallet).first().pk,
            "llmcallevent": LLMCallEvent.objects.first().pk,
            "modelprice": price.pk,
            "credithold": hold.pk,
            "debit": debit.pk,
            "walletevent": event.pk,
            "delivery": delivery.pk,
            "procrastinatejob": ProcrastinateJob.objects.order_by("id").first().pk,
            "group": group.pk,
            "authtoken": token.pk,
            "accessattempt": AccessAttempt.objects.create(
                username="someone", ip_address="203.0.113.5", failures_since_start=1, **seen
            ).pk,
            "accesslog": AccessLog.objects.create(username="someone", ip_address="203.0.113.5", **seen).pk,
            "accessfailurelog": AccessFailureLog.objects.create(
                username="someone", ip_address="203.0.113.5", **seen
            ).pk,  # knox addresses a token by its digest (never its key)
            "ct": ContentType.objects.get_for_model(user.wallet).pk,
            "userfile": user_file.pk,
            "toolcallevent": ToolCallEvent.objects.get(turn=turn).pk,
            "turn": turn.pk,
            "chatsession": session.pk,
            "customer": user.pk,
            "sessionsummary": summary.pk,
            "apikey": create_api_key(user=user, name="access table")[0].pk,
            "creditlot": CreditLot.objects.filter(wallet=user.wallet).first().pk,
            "purchase": Purchase.objects.create(
                user=user, credits=100, amount=Decimal("1.00"), currency="usd", checkout_url="https://x.test/"
            ).pk,
            "allowanceissue": AllowanceIssue.objects.get(allowance=issued).pk,
            "allowance": Allowance.objects.create(
                name="access table", credits=Decimal("5"), period="month"
            ).pk,
        },
    }


def _client(world, role: str, path: str) -> Client:
    client = Client()
    if role == "anonymous":
        return client
    account = world["users"][role]
    if path.startswith("/api/"):
        return Client(headers={"Authorization": f"Token {api_token(account)}"})
    if path.startswith("/v1/"):
        return Client(headers={"Authorization": f"Bearer {create_api_key(user=account, name='access')[1]}"})
    client.force_login(account)
    return client


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("route", "method", "url", "expected"), TABLE, ids=[f"{r[1]} {r[2]}" for r in TABLE])
def test_each_role_gets_the_status_the_table_says(world, role, route, method, url, expected):
    path = url.format(**world["ids"])
    body = BODIES.get((method, url))
    client = _client(world, role, path)
    if method == "get":
        response = client.get(path)
    else:
        response = getattr(client, method)(path, body or {}, content_type="application/json")

    assert response.status_code == expected[role], (
        response.status_code,
        role,
        method,
        path,
        response.content[:200],
    )


# The API's own documents (drf-spectacular's schema and its two pages) read no parameter of ours.
DOCUMENTS = ("/api/v1/schema/", "/api/v1/docs/", "/api/v1/redoc/")
# Every API call a role may make, once each: the first role the table lets through (2xx).
ALLOWED_API_CALLS = [
    (method, url, next(role for role in ROLES if 200 <= expected[role] < 300))
    for _, method, url, expected in TABLE
    if url.startswith(("/api/", "/v1/"))
    and url not in DOCUMENTS
    and any(200 <= status < 300 for status in expected.values())
]


@pytest.mark.parametrize("query", ["?x=%00", "?%00=1", "?page=1%00"])
@pytest.mark.parametrize(
    ("method", "url", "role"), ALLOWED_API_CALLS, ids=[f"{m} {u}" for m, u, _ in ALLOWED_API_CALLS]
)
def test_a_nul_in_the_query_string_is_400_on_every_api_call(world, method, url, role, query):
    # docs/api.md: "A NUL character in any parameter name or value is a 400", whatever the endpoint.
    path = url.format(**world["ids"])
    client = _client(world, role, path)
    body = BODIES.get((method, url))
    if method == "get":
        response = client.get(path + query)
    else:
        response = getattr(client, method)(path + query, body or {}, content_type="application/json")

    assert response.status_code == 400, (method, path + query, response.status_code, response.content[:200])
