"""Reconciliation: recompute each wallet from its ledger rows and name every one that disagrees."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.postgres.aggregates import ArrayAgg
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Count, DecimalField, Exists, F, Min, OuterRef, Q, Sum, Value
from django.db.models.functions import Coalesce

from billing.models import (
    AllowanceIssue,
    CreditHold,
    CreditLot,
    CreditTransaction,
    DetachedCallMonth,
    LLMCallEvent,
    LotAllocation,
    Purchase,
    SpendLimit,
    Wallet,
)
from billing.services.ledger import STARTING_CREDITS_REASON
from core.db import one_snapshot
from core.money import to_decimal

CHUNK = 5000


@dataclass(frozen=True)
class Discrepancy:
    wallet_id: int
    username: str
    problem: str


@dataclass
class LedgerCheck:
    wallets: int = 0
    rows: int = 0
    discrepancies: list[Discrepancy] | None = None

    @property
    def ok(self) -> bool:
        return not self.discrepancies


def check_ledger(*, user_id: int | None = None, on_wallet: Callable[[], None] | None = None) -> LedgerCheck:
    """Verify balance == sum(amounts) == sum(open lots) - debt, held == sum(open holds), the balance_after chain,
    refunds <= their debits, each lot's remaining == amount - debt paid - its allocations, each
    burning row's allocations == its amount, every call link, each debit against its call event,
    paid purchases and allowance issues against their rows, the initiators of grants, adjustments
    and refunds, expiries, and each key limit's held == sum(its open holds) (docs/reliability.md lists them).

    All of it is read in one REPEATABLE READ snapshot of the primary: under READ COMMITTED a charge
    committing between two of its reads (row totals, then wallets) would show as a discrepancy.
    `on_wallet()` is called as each wallet's totals are checked (a command's progress)."""
    with one_snapshot(DEFAULT_DB_ALIAS):
        return _check(user_id=user_id, on_wallet=on_wallet)


def _check(*, user_id: int | None, on_wallet: Callable[[], None] | None) -> LedgerCheck:
    wallets = Wallet.objects.order_by("id")
    rows = CreditTransaction.objects.order_by("wallet_id", "id")
    if user_id is not None:
        wallets = wallets.filter(user_id=user_id)
        rows = rows.filter(wallet__user_id=user_id)
    totals = _row_totals(rows)
    open_holds = _open_holds(user_id=user_id)
    open_lots = _open_lots(user_id=user_id)
    names = {}
    result = LedgerCheck(discrepancies=[])
    for wallet_id, username, balance, held, debt in wallets.values_list(
        "id", "user__username", "balance", "held", "debt"
    ).iterator(chunk_size=CHUNK):
        result.wallets += 1
        if on_wallet is not None:
            on_wallet()
        names[wallet_id] = username
        total, count = totals.get(wallet_id, (Decimal("0.000000"), 0))
        balance = to_decimal(balance)
        if balance != total:
            result.discrepancies.append(
                Discrepancy(wallet_id, username, f"balance {balance} != sum of {count} rows {total}")
            )
        lots_total, lots_count = open_lots.get(wallet_id, (Decimal("0.000000"), 0))
        if lots_total - to_decimal(debt) != balance:
            result.discrepancies.append(
                Discrepancy(
                    wallet_id,
                    username,
                    f"{lots_count} open lots hold {lots_total} and the debt is {to_decimal(debt)}: "
                    f"{lots_total - to_decimal(debt)} != balance {balance}",
                )
            )
        held_total, held_count = open_holds.get(wallet_id, (Decimal("0.000000"), 0))
        if to_decimal(held) != held_total:
            result.discrepancies.append(
                Discrepancy(
                    wallet_id,
                    username,
                    f"held {to_decimal(held)} != sum of {held_count} open holds {held_total}",
                )
            )
    result.discrepancies.extend(_chain_breaks(rows, names, result))
    result.discrepancies.extend(_refund_breaks(user_id=user_id, names=names))
    result.discrepancies.extend(_lot_breaks(user_id=user_id, names=names))
    result.discrepancies.extend(_missing_calls(user_id=user_id, names=names))
    result.discrepancies.extend(_call_breaks(user_id=user_id, names=names))
    result.discrepancies.extend(_purchase_breaks(user_id=user_id, names=names))
    result.discrepancies.extend(_allowance_breaks(user_id=user_id, names=names))
    result.discrepancies.extend(_initiator_breaks(user_id=user_id, names=names))
    result.discrepancies.extend(_key_limit_breaks(user_id=user_id, names=names))
    return result


def _sum_and_count(rows, *, by: str, field: str) -> dict[int, tuple[Decimal, int]]:
    """For each value of `by`, the sum of `field` and the count of `rows` (one grouped query)."""
    return {
        r[by]: (to_decimal(r["total"]), r["n"])
        for r in rows.order_by().values(by).annotate(total=Sum(field), n=Count("id"))
    }


def _row_totals(rows) -> dict[int, tuple[Decimal, int]]:
    """Each wallet's sum and count of ledger rows."""
    return _sum_and_count(rows, by="wallet_id", field="amount")


def _open_holds(*, user_id: int | None) -> dict[int, tuple[Decimal, int]]:
    """Each wallet's sum and count of open holds."""
    holds = CreditHold.objects.filter(status=CreditHold.Status.HELD)
    if user_id is not None:
        holds = holds.filter(wallet__user_id=user_id)
    return _sum_and_count(holds, by="wallet_id", field="amount")


def _open_lots(*, user_id: int | None) -> dict[int, tuple[Decimal, int]]:
    """Each wallet's sum and count of lots with something left."""
    lots = CreditLot.objects.filter(remaining__gt=0)
    if user_id is not None:
        lots = lots.filter(wallet__user_id=user_id)
    return _sum_and_count(lots, by="wallet_id", field="remaining")


def _purchase_breaks(*, user_id: int | None, names: dict[int, str]) -> Iterator[Discrepancy]:
    """Each paid purchase is credited by one `purchase` row of its buyer's wallet for its credits, and
    every `purchase` row credits a paid purchase (purchases and such rows are a small share of the ledger)."""
    paid = Purchase.objects.filter(status=Purchase.Status.PAID).exclude(
        transaction__kind=CreditTransaction.Kind.PURCHASE,
        transaction__amount=F("credits"),
        transaction__wallet__user_id=F("user_id"),
    )
    rows = CreditTransaction.objects.filter(kind=CreditTransaction.Kind.PURCHASE).exclude(
        purchase__status=Purchase.Status.PAID
    )
    if user_id is not None:
        paid, rows = paid.filter(user_id=user_id), rows.filter(wallet__user_id=user_id)
    for purchase in paid.values("id", "user__wallet__id", "transaction_id").iterator(chunk_size=CHUNK):
        wallet_id = purchase["user__wallet__id"]
        yield Discrepancy(
            wallet_id,
            names.get(wallet_id, "?"),
            f"paid purchase {purchase['id']} is not credited by a purchase row of its credits "
            f"(row {purchase['transaction_id']})",
        )
    for row in rows.values("id", "wallet_id").iterator(chunk_size=CHUNK):
        yield Discrepancy(
            row["wallet_id"],
            names.get(row["wallet_id"], "?"),
            f"purchase row {row['id']} credits no paid purchase",
        )


def _allowance_breaks(*, user_id: int | None, names: dict[int, str]) -> Iterator[Discrepancy]:
    """Each `allowance` row is paid for one AllowanceIssue of its wallet's user, and each issue is paid
    by an `allowance` row of its user's wallet (without its issue, issue_allowances would pay the
    period again). Such rows and issues are a small share of the ledger."""
    issued = Exists(
        AllowanceIssue.objects.filter(transaction_id=OuterRef("pk"), user_id=OuterRef("wallet__user_id"))
    )
    rows = CreditTransaction.objects.filter(kind=CreditTransaction.Kind.ALLOWANCE).exclude(issued)
    issues = AllowanceIssue.objects.exclude(
        transaction__kind=CreditTransaction.Kind.ALLOWANCE, transaction__wallet__user_id=F("user_id")
    )
    if user_id is not None:
        rows, issues = rows.filter(wallet__user_id=user_id), issues.filter(user_id=user_id)
    for row in (
        rows.order_by("wallet_id", "id").values("id", "wallet_id", "amount").iterator(chunk_size=CHUNK)
    ):
        yield Discrepancy(
            row["wallet_id"],
            names.get(row["wallet_id"], "?"),
            f"allowance row {row['id']} of {to_decimal(row['amount'])} pays no allowance issue of this wallet's user",
        )
    for issue in (
        issues.order_by("id")
        .values(
            "id",
            "allowance_id",
            "period_start",
            "user__wallet__id",
            "transaction_id",
            "transaction__kind",
            "transaction__wallet_id",
        )
        .iterator(chunk_size=CHUNK)
    ):
        wallet_id = issue["user__wallet__id"]
        yield Discrepancy(
            wallet_id,
            names.get(wallet_id, "?"),
            f"allowance issue {issue['id']} (allowance {issue['allowance_id']}, period {issue['period_start']}) "
            f"is paid by row {issue['transaction_id']}, a {issue['transaction__kind']} row of wallet "
            f"{issue['transaction__wallet_id']}, not an allowance row of wallet {wallet_id}",
        )


def _initiator_breaks(*, user_id: int | None, names: dict[int, str]) -> Iterator[Discrepancy]:
    """Grants, adjustments and refunds are staff's: each names who made it (`initiated_by`), except a
    wallet's one starting-credits grant, which names none (billing.services.ledger.open_wallet).
    Whether that user was staff is checked when the row is written, not here: staff who leave lose
    `is_staff`, and the rows they made stay theirs. Such rows are a small share of the ledger; one
    query for them, one grouped over starting grants."""
    kind = CreditTransaction.Kind
    starting = Q(kind=kind.GRANT, reason=STARTING_CREDITS_REASON, initiated_by__isnull=True)
    staff_kinds = CreditTransaction.objects.filter(kind__in=[kind.GRANT, kind.ADJUSTMENT, kind.REFUND])
    if user_id is not None:
        staff_kinds = staff_kinds.filter(wallet__user_id=user_id)
    for row in (
        staff_kinds.exclude(starting)
        .filter(initiated_by__isnull=True)
        .order_by("wallet_id", "id")
        .values("id", "wallet_id", "kind")
        .iterator(chunk_size=CHUNK)
    ):
        yield Discrepancy(
            row["wallet_id"],
            names.get(row["wallet_id"], "?"),
            f"{row['kind']} row {row['id']} initiated by nobody, and it is not the wallet's starting credits",
        )
    for row in (
        staff_kinds.filter(starting)
        .values("wallet_id")
        .annotate(n=Count("id"), ids=ArrayAgg("id", order_by="id"))
        .filter(n__gt=1)
        .order_by("wallet_id")
        .iterator(chunk_size=CHUNK)
    ):
        yield Discrepancy(
            row["wallet_id"],
            names.get(row["wallet_id"], "?"),
            f"{row['n']} starting-credits grants (rows {', '.join(map(str, row['ids']))}); a wallet has one at most",
        )


def _key_limit_breaks(*, user_id: int | None, names: dict[int, str]) -> Iterator[Discrepancy]:
    """Each API key limit's `held` is the sum of its open holds (a cap reads the wallet's `held`,
    checked above). One grouped query over the open holds, one over the key limits that hold
    something or have open holds."""
    holds = CreditHold.objects.filter(status=CreditHold.Status.HELD, spend_limit_id__isnull=False)
    limits = SpendLimit.objects.filter(kind=SpendLimit.Kind.KEY)
    if user_id is not None:
        holds, limits = holds.filter(wallet__user_id=user_id), limits.filter(wallet__user_id=user_id)
    open_holds = _sum_and_count(holds, by="spend_limit_id", field="amount")
    for limit_id, wallet_id, held in (
        limits.filter(~Q(held=0) | Q(id__in=list(open_holds)))
        .order_by("wallet_id", "id")
        .values_list("id", "wallet_id", "held")
        .iterator(chunk_size=CHUNK)
    ):
        held_total, held_count = open_holds.get(limit_id, (Decimal("0.000000"), 0))
        if to_decimal(held) != held_total:
            yield Discrepancy(
                wallet_id,
                names.get(wallet_id, "?"),
                f"key limit {limit_id}: held {to_decimal(held)} != sum of {held_count} open holds {held_total}",
            )


def _lot_breaks(*, user_id: int | None, names: dict[int, str]) -> Iterator[Discrepancy]:
    """Each lot's remaining is its amount less the debt it paid and its allocations; each row's
    allocations add up to what it took, from lots of its own wallet. Grouped queries that return
    only the rows that disagree."""
    money = DecimalField(max_digits=20, decimal_places=6)
    lots = CreditLot.objects.all()
    allocations = LotAllocation.objects.all()
    if user_id is not None:
        lots = lots.filter(wallet__user_id=user_id)
        allocations = allocations.filter(transaction__wallet__user_id=user_id)
    for lot in (
        lots.annotate(allocated=Coalesce(Sum("allocations__amount"), Value(0), output_field=money))
        .exclude(remaining=F("amount") - F("debt_paid") - F("allocated"))
        .values("id", "wallet_id", "amount", "debt_paid", "allocated", "remaining")
        .iterator(chunk_size=CHUNK)
    ):
        yield Discrepancy(
            lot["wallet_id"],
            names.get(lot["wallet_id"], "?"),
            f"lot {lot['id']}: remaining {lot['remaining']} != amount {lot['amount']} - debt paid "
            f"{lot['debt_paid']} - allocated {lot['allocated']}",
        )
    for row in (
        allocations.values("transaction_id", "transaction__wallet_id", "transaction__amount")
        .annotate(total=Sum("amount"))
        .exclude(total=-F("transaction__amount"))
        .iterator(chunk_size=CHUNK)
    ):
        wallet_id = row["transaction__wallet_id"]
        yield Discrepancy(
            wallet_id,
            names.get(wallet_id, "?"),
            f"row {row['transaction_id']}: allocations add up to {row['total']}, "
            f"not its {-to_decimal(row['transaction__amount'])}",
        )
    for row in (
        allocations.filter(lot__isnull=False)
        .exclude(lot__wallet_id=F("transaction__wallet_id"))
        .values("id", "transaction_id", "transaction__wallet_id", "lot_id")
        .iterator(chunk_size=CHUNK)
    ):
        wallet_id = row["transaction__wallet_id"]
        yield Discrepancy(
            wallet_id,
            names.get(wallet_id, "?"),
            f"row {row['transaction_id']} burned lot {row['lot_id']} of another wallet",
        )
    # An expiry empties one lot that has an expiry, once (expire_lots writes its row under the wallet's
    # lock after re-reading the lot): a lot that never expires, or a second expiry of one lot, is not
    # an expiry. (When it ran is not compared with the lot's expires_at: the sweep may be given a
    # later `now` than the clock that dates its rows.)
    expiries = allocations.filter(transaction__kind=CreditTransaction.Kind.EXPIRY)
    for row in (
        expiries.filter(Q(lot__isnull=True) | Q(lot__expires_at__isnull=True))
        .values("transaction_id", "transaction__wallet_id", "lot_id")
        .order_by("transaction_id")
        .iterator(chunk_size=CHUNK)
    ):
        wallet_id = row["transaction__wallet_id"]
        what = "no lot (the debt)" if row["lot_id"] is None else f"lot {row['lot_id']}, which never expires"
        yield Discrepancy(
            wallet_id, names.get(wallet_id, "?"), f"expiry row {row['transaction_id']} took from {what}"
        )
    for row in (
        expiries.filter(lot__isnull=False)
        .values("lot_id", "lot__wallet_id")
        .annotate(
            n=Count("transaction_id", distinct=True),
            ids=ArrayAgg("transaction_id", distinct=True, order_by="transaction_id"),
        )
        .filter(n__gt=1)
        .order_by("lot_id")
        .iterator(chunk_size=CHUNK)
    ):
        wallet_id = row["lot__wallet_id"]
        yield Discrepancy(
            wallet_id,
            names.get(wallet_id, "?"),
            f"lot {row['lot_id']} expired {row['n']} times (rows {', '.join(map(str, row['ids']))}); a lot expires once",
        )


def _missing_calls(*, user_id: int | None, names: dict[int, str]) -> Iterator[Discrepancy]:
    """Each ledger row and hold that names a call event finds it (the link has no database constraint).

    Call events are partitioned by month and the links to them carry no foreign key (PostgreSQL's
    would need created_at); a link into a month detached for retention (DetachedCallMonth's id range)
    is expected to find nothing. One anti-join per table; the first broken link per wallet is named.
    """
    archived = Q()
    for first_id, last_id in DetachedCallMonth.objects.exclude(first_id=None).values_list(
        "first_id", "last_id"
    ):
        archived |= Q(llm_call__gte=first_id, llm_call__lte=last_id)
    event_exists = Exists(LLMCallEvent.objects.filter(pk=OuterRef("llm_call_id")))
    for label, queryset in (("ledger row", CreditTransaction.objects), ("hold", CreditHold.objects)):
        links = queryset.filter(llm_call_id__isnull=False).exclude(event_exists)
        if archived:
            links = links.exclude(archived)
        if user_id is not None:
            links = links.filter(wallet__user_id=user_id)
        seen = set()
        for row_id, wallet_id, call_id in links.order_by("wallet_id", "id").values_list(
            "id", "wallet_id", "llm_call_id"
        ):
            if wallet_id not in seen:
                seen.add(wallet_id)
                yield Discrepancy(
                    wallet_id,
                    names.get(wallet_id, "?"),
                    f"{label} {row_id}: call event {call_id} does not exist",
                )


def _call_breaks(*, user_id: int | None, names: dict[int, str]) -> Iterator[Discrepancy]:
    """Each debit and its call event agree: the debit is minus the call's cost, the call is the wallet
    owner's and ok, and no call has two debits; each ok call that cost something, of a user with a
    wallet, has its debit (the charge writes both in one statement, so a snapshot never sees one alone).

    Only events in attached months are here (a detached month's are not in the table, and a link into
    it is _missing_calls' business). Two grouped or joined queries over the debits, one anti-join over
    the events.
    """
    debits = CreditTransaction.objects.filter(kind=CreditTransaction.Kind.DEBIT, llm_call_id__isnull=False)
    events = LLMCallEvent.objects.filter(
        status=LLMCallEvent.Status.OK, cost__gt=0, user__wallet__isnull=False
    )
    if user_id is not None:
        debits, events = debits.filter(wallet__user_id=user_id), events.filter(user_id=user_id)
    for row in (
        debits.annotate(
            call_cost=F("llm_call__cost"),
            call_user_id=F("llm_call__user_id"),
            call_status=F("llm_call__status"),
            owner_id=F("wallet__user_id"),
        )
        .filter(call_status__isnull=False)
        .filter(
            ~Q(amount=-F("call_cost"))
            | ~Q(call_user_id=F("owner_id"))
            | Q(call_status=LLMCallEvent.Status.ERROR)
        )
        .order_by("wallet_id", "id")
        .values(
            "id", "wallet_id", "amount", "llm_call_id", "call_cost", "call_user_id", "call_status", "owner_id"
        )
        .iterator(chunk_size=CHUNK)
    ):
        wallet_id, name = row["wallet_id"], names.get(row["wallet_id"], "?")
        prefix = f"debit {row['id']} of call event {row['llm_call_id']}"
        if to_decimal(row["amount"]) != -to_decimal(row["call_cost"]):
            yield Discrepancy(
                wallet_id,
                name,
                f"{prefix}: amount {to_decimal(row['amount'])} != -cost {-to_decimal(row['call_cost'])}",
            )
        if row["call_user_id"] != row["owner_id"]:
            yield Discrepancy(
                wallet_id,
                name,
                f"{prefix}: the call is user {row['call_user_id']}'s, the wallet user {row['owner_id']}'s",
            )
        if row["call_status"] == LLMCallEvent.Status.ERROR:
            yield Discrepancy(wallet_id, name, f"{prefix}: the call failed (status error)")
    for row in (
        debits.values("llm_call_id")
        .annotate(n=Count("id"), wallet_id=Min("wallet_id"), ids=ArrayAgg("id", order_by="id"))
        .filter(n__gt=1)
        .order_by("llm_call_id")
        .iterator(chunk_size=CHUNK)
    ):
        yield Discrepancy(
            row["wallet_id"],
            names.get(row["wallet_id"], "?"),
            f"call event {row['llm_call_id']} has {row['n']} debits (rows {', '.join(map(str, row['ids']))})",
        )
    has_debit = Exists(
        CreditTransaction.objects.filter(kind=CreditTransaction.Kind.DEBIT, llm_call_id=OuterRef("pk"))
    )
    for row in (
        events.exclude(has_debit)
        .order_by("id")
        .values("id", "cost", "user__wallet__id")
        .iterator(chunk_size=CHUNK)
    ):
        wallet_id = row["user__wallet__id"]
        yield Discrepancy(
            wallet_id,
            names.get(wallet_id, "?"),
            f"call event {row['id']} (ok) cost {to_decimal(row['cost'])} and has no debit",
        )


def _refund_breaks(*, user_id: int | None, names: dict[int, str]) -> Iterator[Discrepancy]:
    """Each refund gives back a debit of its own wallet, and a debit's refunds never add up to more than it.

    One grouped query over refund rows only (a small share of the ledger), joined to their debits.
    """
    refunds = CreditTransaction.objects.filter(kind=CreditTransaction.Kind.REFUND)
    if user_id is not None:
        refunds = refunds.filter(wallet__user_id=user_id)
    grouped = (
        refunds.values(
            "wallet_id", "refund_of_id", "refund_of__wallet_id", "refund_of__kind", "refund_of__amount"
        )
        .annotate(total=Sum("amount"), n=Count("id"))
        .order_by("wallet_id", "refund_of_id")
    )
    for r in grouped.iterator(chunk_size=CHUNK):
        wallet_id, debit_id = r["wallet_id"], r["refund_of_id"]
        name = names.get(wallet_id, "?")
        if r["refund_of__kind"] != CreditTransaction.Kind.DEBIT or r["refund_of__wallet_id"] != wallet_id:
            yield Discrepancy(
                wallet_id,
                name,
                f"{r['n']} refund(s) of transaction {debit_id}, which is not a debit of this wallet",
            )
        elif to_decimal(r["total"]) > -to_decimal(r["refund_of__amount"]):
            yield Discrepancy(
                wallet_id,
                name,
                f"refunds of debit {debit_id} add up to {to_decimal(r['total'])}, "
                f"more than its {-to_decimal(r['refund_of__amount'])}",
            )


def _chain_breaks(rows, names: dict[int, str], result: LedgerCheck) -> Iterator[Discrepancy]:
    """Each row's balance_after must equal the previous row's plus its amount (from 0); first break only."""
    current_wallet, previous, broken = None, Decimal(0), False
    for row_id, wallet_id, amount, balance_after in rows.values_list(
        "id", "wallet_id", "amount", "balance_after"
    ).iterator(chunk_size=CHUNK):
        result.rows += 1
        if wallet_id != current_wallet:
            current_wallet, previous, broken = wallet_id, Decimal(0), False
        amount, balance_after = to_decimal(amount), to_decimal(balance_after)
        if not broken and previous + amount != balance_after:
            broken = True
            yield Discrepancy(
                wallet_id,
                names.get(wallet_id, "?"),
                f"row {row_id}: balance_after {balance_after} != previous {previous} + amount {amount}",
            )
        previous = balance_after
