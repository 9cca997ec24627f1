"""The console's customer page: one section per support question, each read through its owning app's selectors.

A section is a function `(page) -> Section | list[Section] | None` in SECTIONS, rendered in that order with
its own template (templates/admin/web/customer/sections/). Adding what support needs to see about a
customer is one function and one template here.
Every section reads a bounded number of rows: the page's query count does not grow with the ledger.
"""

from dataclasses import dataclass, field

from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Q
from django.urls import reverse

from accounts.customer_selectors import key_ids_of, keys_for_user, tokens_for_user
from accounts.models import ApiKey
from billing.customer_selectors import WalletState, ledger_page, refunded_debit_ids, state_of
from billing.lot_selectors import live_lots_page
from billing.models import CreditTransaction, Wallet
from billing.selectors import purchases_for_user, wallet_with_caps
from sessions_app.customer_selectors import recent_sessions, recent_turns, turn_ids_for_calls

LOTS = 20
PURCHASES = 10
LEDGER_ROWS = 25
SESSIONS = 10
TURNS = 10
TOKENS = 10
KEYS = 20
STAFF_ACTIONS = 20


@dataclass
class Section:
    id: str  # the HTML id, and the anchor of the page's table of contents
    title: str
    template: str
    context: dict = field(default_factory=dict)


@dataclass
class CustomerPage:
    """What the sections share: who looks, the customer, their wallet, and the rows shown (for the staff actions on them)."""

    viewer: object
    customer: object
    wallet: Wallet
    state: WalletState


def _template(name: str) -> str:
    return f"admin/web/customer/sections/{name}.html"


def wallet_section(page: CustomerPage) -> Section:
    # The caps answer "refused with credits left": a spending cap refuses whatever the balance says.
    caps = wallet_with_caps(user=page.customer)
    return Section("wallet", "Wallet", _template("wallet"), {"state": page.state, "caps": caps})


def lots_section(page: CustomerPage) -> Section:
    """The live lots in burn order (the first LOTS), the debt and the next expiry: "why did my credits go?"."""
    lots_url = None
    if page.viewer.has_perm("billing.view_creditlot"):
        lots_url = reverse("admin:billing_creditlot_changelist") + f"?wallet={page.wallet.pk}"
    return Section(
        "lots",
        "Credit lots and expiries",
        _template("lots"),
        {
            "lots": live_lots_page(wallet_id=page.wallet.pk, limit=LOTS),
            "state": page.state,
            "limit": LOTS,
            "lots_url": lots_url,
        },
    )


def purchases_section(page: CustomerPage) -> Section | None:
    """The newest purchases (pending, paid, expired) with their Checkout Session, for staff who may read them."""
    if not page.viewer.has_perm("billing.view_purchase"):
        return None
    return Section(
        "purchases",
        "Purchases",
        _template("purchases"),
        {"purchases": list(purchases_for_user(user=page.customer)[:PURCHASES]), "limit": PURCHASES},
    )


def ledger_section(page: CustomerPage) -> Section:
    rows = ledger_page(user=page.customer, size=LEDGER_ROWS).rows
    turns = {}
    if page.viewer.has_perm("sessions_app.view_turn"):
        turns = turn_ids_for_calls(call_ids=[row.llm_call_id for row in rows if row.llm_call_id])
    for row in rows:
        row.turn_id = turns.get(row.llm_call_id)
    return Section(
        "ledger", "Recent ledger", _template("ledger"), {"rows": rows, "limit": LEDGER_ROWS, "page": page}
    )


def conversations_section(page: CustomerPage) -> Section | None:
    # Conversations are private: only staff whose group grants reading them (Support, not Finance).
    if not page.viewer.has_perm("sessions_app.view_chatsession"):
        return None
    sessions = recent_sessions(user=page.customer, limit=SESSIONS)
    return Section(
        "conversations",
        "Chat sessions and turns",
        _template("conversations"),
        {"sessions": sessions, "turns": recent_turns(sessions=sessions, limit=TURNS), "page": page},
    )


def keys_section(page: CustomerPage) -> Section:
    """The customer's API keys, revoked ones too (their calls stay theirs), each linking to its admin page."""
    return Section(
        "keys",
        "API keys",
        _template("keys"),
        {
            "keys": keys_for_user(user=page.customer, limit=KEYS),
            "limit": KEYS,
            "can_open": page.viewer.has_perm("accounts.view_apikey"),
        },
    )


def peer_sections(page: CustomerPage) -> list[Section]:
    """Sections from apps beside this one (notifications' deliveries), which web may not import: each app
    whose config has `customer_page_section(*, customer, wallet_id) -> dict` contributes one."""
    sections = []
    for config in apps.get_app_configs():
        build = getattr(config, "customer_page_section", None)
        if callable(build):
            sections.append(Section(**build(customer=page.customer, wallet_id=page.wallet.pk)))
    return sections


def tokens_section(page: CustomerPage) -> Section:
    return Section(
        "tokens",
        "API tokens (sign-ins)",
        _template("tokens"),
        {"tokens": tokens_for_user(user=page.customer, limit=TOKENS)},
    )


def staff_actions_section(page: CustomerPage) -> Section:
    """Admin log entries on the user, their wallet, their debits that were refunded (a refund is logged
    on its debit) and their API keys (a revocation is logged on the key)."""
    user_model = type(page.customer)._meta.concrete_model
    types = ContentType.objects.get_for_models(user_model, Wallet, CreditTransaction, ApiKey)  # cached
    on = (
        Q(content_type=types[user_model], object_id=str(page.customer.pk))
        | Q(content_type=types[Wallet], object_id=str(page.wallet.pk))
        | Q(content_type=types[CreditTransaction], object_id__in=refunded_debit_ids(wallet_id=page.wallet.pk))
        | Q(content_type=types[ApiKey], object_id__in=key_ids_of(user=page.customer))
    )
    entries = list(
        LogEntry.objects.filter(on)
        .select_related("user", "content_type")
        .order_by("-action_time")[:STAFF_ACTIONS]
    )
    return Section(
        "staff-actions", "Staff actions on this customer", _template("staff_actions"), {"entries": entries}
    )


# In page order.
SECTIONS = (
    wallet_section,
    lots_section,
    purchases_section,
    ledger_section,
    conversations_section,
    keys_section,
    peer_sections,
    tokens_section,
    staff_actions_section,
)


def customer_sections(customer, *, viewer) -> list[Section]:
    """Every section of one customer's page that `viewer` may read, in order (the wallet read with the customer)."""
    page = CustomerPage(
        viewer=viewer, customer=customer, wallet=customer.wallet, state=state_of(customer.wallet)
    )
    sections = []
    for build in SECTIONS:
        built = build(page)
        sections.extend(built if isinstance(built, list) else [built] if built is not None else [])
    return sections
