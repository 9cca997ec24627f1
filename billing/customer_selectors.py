"""Reads about one customer's money for the pages that show it: the user's wallet page and the console's customer page."""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import CharField, QuerySet
from django.db.models.functions import Cast

from billing.models import CreditTransaction, Wallet
from billing.periods import local_today
from billing.selectors import is_low_balance, low_balance_threshold, transactions_for_user
from billing.usage_selectors import usage_by_bucket
from core.money import to_decimal

LEDGER_PAGE_SIZE = 50


@dataclass(frozen=True)
class WalletState:
    """What a customer (or support) needs to know about a wallet right now, from its one row."""

    wallet_id: int
    balance: Decimal
    held: Decimal  # reserved by turns in flight
    available: Decimal  # balance - held: what the next turn may spend
    low_balance: bool
    low_balance_threshold: Decimal
    enforcement: str  # the wallet's override: default, exempt or enforced
    enforced: bool  # whether a turn is refused (402) when nothing is available, all things considered
    debt: Decimal = Decimal(0)  # charged beyond the live lots: the next credits pay it first


def wallet_state(*, user) -> WalletState:
    """The user's wallet as of now, with the enforcement that applies to it, in one query."""
    wallet = Wallet.objects.only("id", "balance", "held", "enforcement", "debt").get(user=user)
    return state_of(wallet)


def state_of(wallet: Wallet) -> WalletState:
    """A wallet row already read, as a WalletState (no query)."""
    if wallet.enforcement == Wallet.Enforcement.DEFAULT:
        enforced = bool(settings.CREDIT_ENFORCEMENT_ENABLED)
    else:
        enforced = wallet.enforcement == Wallet.Enforcement.ENFORCED
    balance, held = to_decimal(wallet.balance), to_decimal(wallet.held)
    return WalletState(
        wallet_id=wallet.pk,
        balance=balance,
        held=held,
        available=to_decimal(balance - held),
        low_balance=is_low_balance(balance),
        low_balance_threshold=low_balance_threshold(),
        enforcement=wallet.enforcement,
        enforced=enforced,
        debt=to_decimal(wallet.debt),
    )


@dataclass(frozen=True)
class LedgerPage:
    rows: list[CreditTransaction]
    next_before: int | None  # pass as `before` for the next (older) page; None: this is the last


def ledger_page(*, user, before: int | None = None, size: int = LEDGER_PAGE_SIZE) -> LedgerPage:
    """One page of the user's ledger, newest first, rows with an id below `before` (keyset: page 1 and 500 cost the same).

    The initiator is joined; `llm_call_id` is on the row, for links to the call and its turn.
    """
    rows = transactions_for_user(user=user)
    if before is not None:
        rows = rows.filter(id__lt=before)
    page = list(rows[: size + 1])
    more = len(page) > size
    page = page[:size]
    return LedgerPage(rows=page, next_before=page[-1].pk if more else None)


def debits_for_calls(*, call_ids: list[int]) -> QuerySet[CreditTransaction]:
    """The debit rows of these metered calls (a turn's), oldest first, with their wallet's user."""
    return (
        CreditTransaction.objects.filter(kind=CreditTransaction.Kind.DEBIT, llm_call_id__in=call_ids)
        .select_related("wallet__user")
        .order_by("id")
    )


def owner_of_transaction(*, transaction_id: int) -> int | None:
    """The id of the user whose wallet holds this ledger row, or None when there is no such row."""
    return (
        CreditTransaction.objects.filter(pk=transaction_id).values_list("wallet__user_id", flat=True).first()
    )


@dataclass(frozen=True)
class DayUsage:
    day: date
    calls: int
    cost: Decimal


def usage_by_day(*, user_id: int, days: int = 30) -> list[DayUsage]:
    """The user's successful calls and their cost per local day (REPORT_TIME_ZONE), the last `days` days
    ending today, one entry per day (zeros included) so a chart reads evenly; one query (the rollups)."""
    today = local_today()
    start = today - timedelta(days=days - 1)
    rows = {
        row["date"]: row for row in usage_by_bucket(start=start, end=today, bucket="day", user_id=user_id)
    }
    out = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        row = rows.get(day) or {}
        out.append(DayUsage(day=day, calls=row.get("calls") or 0, cost=to_decimal(row.get("cost") or 0)))
    return out


def refunded_debit_ids(*, wallet_id: int) -> QuerySet:
    """The ids (as text, as the admin's log names objects) of the wallet's debits that have a refund:
    a subquery, for the console's staff actions (a refund is logged on its debit)."""
    return (
        CreditTransaction.objects.filter(wallet_id=wallet_id, kind=CreditTransaction.Kind.REFUND)
        .annotate(debit_id=Cast("refund_of_id", CharField()))
        .values("debit_id")
    )
