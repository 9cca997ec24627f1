"""check_ledger names rows that agree with their wallet's totals but not with what they stand for.

Each test corrupts data as an audit did: one SQL statement with the append-only trigger switched off
(`session_replication_role = replica`), then expects the wallet, the row and both figures named.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from billing import services
from billing.models import CreditLot, CreditTransaction, LotAllocation
from billing.reconcile import check_ledger
from billing.services.lots import expire_lots
from tests.factories import ModelPriceFactory, UserFactory, fund

pytestmark = pytest.mark.django_db

MONDAY_NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def corrupt(sql: str, params: list) -> None:
    """One statement around every trigger (the ledger's append-only one included), as the audit did."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)
        cursor.execute("SET LOCAL session_replication_role = origin")


def problems(wallet_id: int) -> list[str]:
    result = check_ledger()
    return [d.problem for d in result.discrepancies if d.wallet_id == wallet_id]


@pytest.fixture
def charged(user):
    """The user's debit of 2.000000 and its call event, on a clean ledger."""
    fund(user, "10")
    price = ModelPriceFactory(input_price_per_1k=Decimal(1), output_price_per_1k=Decimal(1))
    result = services.charge(user=user, price=price, provider="echo", input_tokens=1000, output_tokens=1000)
    assert check_ledger().ok
    debit = CreditTransaction.objects.get(pk=result.transaction.pk)
    return debit, result.event, price


# --- debits and their call events ------------------------------------------------------------


def test_check_ledger_names_a_debit_that_is_not_minus_its_calls_cost(user, charged):
    debit, event, _ = charged
    corrupt("UPDATE billing_llmcallevent SET cost = 3 WHERE id = %s", [event.pk])
    assert problems(debit.wallet_id) == [
        f"debit {debit.pk} of call event {event.pk}: amount -2.000000 != -cost -3.000000"
    ]


def test_check_ledger_names_a_debit_whose_call_is_another_users(user, charged):
    debit, event, _ = charged
    other = UserFactory()
    corrupt("UPDATE billing_llmcallevent SET user_id = %s WHERE id = %s", [other.pk, event.pk])
    assert problems(debit.wallet_id) == [
        f"debit {debit.pk} of call event {event.pk}: the call is user {other.pk}'s, the wallet user {user.pk}'s"
    ]


def test_check_ledger_names_a_debit_of_a_failed_call(user, charged):
    debit, event, _ = charged
    # A failed call costs nothing (a check constraint): its debit then disagrees with its cost too.
    corrupt("UPDATE billing_llmcallevent SET status = 'error', cost = 0 WHERE id = %s", [event.pk])
    assert problems(debit.wallet_id) == [
        f"debit {debit.pk} of call event {event.pk}: amount -2.000000 != -cost 0.000000",
        f"debit {debit.pk} of call event {event.pk}: the call failed (status error)",
    ]


def test_check_ledger_names_a_call_with_two_debits(user, charged):
    debit, event, price = charged
    second = services.charge(user=user, price=price, provider="echo", input_tokens=1000, output_tokens=1000)
    corrupt(
        "UPDATE billing_credittransaction SET llm_call_id = %s WHERE id = %s",
        [event.pk, second.transaction.pk],
    )
    assert problems(debit.wallet_id) == [
        f"call event {event.pk} has 2 debits (rows {debit.pk}, {second.transaction.pk})",
        f"call event {second.event.pk} (ok) cost 2.000000 and has no debit",
    ]


def test_check_ledger_names_an_ok_call_that_cost_something_and_has_no_debit(user, charged):
    debit, event, _ = charged
    corrupt("UPDATE billing_credittransaction SET llm_call_id = NULL WHERE id = %s", [debit.pk])
    assert problems(debit.wallet_id) == [f"call event {event.pk} (ok) cost 2.000000 and has no debit"]


def test_a_failed_call_and_a_free_call_need_no_debit(user, charged):
    _, _, price = charged
    services.charge(user=user, price=price, provider="echo", input_tokens=0, output_tokens=0)
    services.record_failed_call(user=user, model=price.model, price=price, provider="echo", error="boom")
    assert check_ledger().ok


# --- allowances and their issues --------------------------------------------------------------


@pytest.fixture
def issued(settings, user):
    """The user's allowance row of 5.000000 and its issue, on a clean ledger."""
    from billing.models import Allowance, AllowanceIssue
    from billing.services.allowances import issue_allowances

    settings.REPORT_TIME_ZONE = "UTC"
    allowance = Allowance.objects.create(name="Plan", credits=Decimal(5), period="day")
    allowance.users.add(user)
    assert issue_allowances(now=MONDAY_NOON) == 1
    assert check_ledger().ok
    return AllowanceIssue.objects.get(user=user)


def test_check_ledger_names_an_allowance_row_without_its_issue(issued):
    corrupt("DELETE FROM billing_allowanceissue WHERE id = %s", [issued.pk])
    row = issued.transaction
    assert problems(row.wallet_id) == [
        f"allowance row {row.pk} of 5.000000 pays no allowance issue of this wallet's user"
    ]


def test_check_ledger_names_an_allowance_issue_paid_by_another_wallets_row(issued, user):
    other_grant = fund(UserFactory(), "3")
    corrupt(
        "UPDATE billing_allowanceissue SET transaction_id = %s WHERE id = %s", [other_grant.pk, issued.pk]
    )
    row = issued.transaction
    assert problems(row.wallet_id) == [
        f"allowance row {row.pk} of 5.000000 pays no allowance issue of this wallet's user",
        f"allowance issue {issued.pk} (allowance {issued.allowance_id}, period 2026-03-02) is paid by row "
        f"{other_grant.pk}, a grant row of wallet {other_grant.wallet_id}, not an allowance row of wallet "
        f"{row.wallet_id}",
    ]


# --- who initiated grants, adjustments and refunds --------------------------------------------


@pytest.mark.parametrize("kind", ["grant", "adjustment"])
def test_check_ledger_names_a_staff_kind_of_row_initiated_by_nobody(user, kind):
    row = fund(user, "10")
    corrupt(
        "UPDATE billing_credittransaction SET kind = %s, initiated_by_id = NULL WHERE id = %s", [kind, row.pk]
    )
    assert problems(row.wallet_id) == [
        f"{kind} row {row.pk} initiated by nobody, and it is not the wallet's starting credits"
    ]


def test_rows_made_by_staff_who_have_left_are_still_theirs(user, charged):
    """Staff who leave lose is_staff; the grants and refunds they made are not broken by it."""
    debit, _, _ = charged
    staff = CreditTransaction.objects.get(kind="grant", wallet=debit.wallet).initiated_by
    services.refund(debit=debit, amount=None, reason="r", initiated_by=staff)
    type(staff).objects.filter(pk=staff.pk).update(is_staff=False, is_active=False)
    assert check_ledger().ok


def test_starting_credits_need_no_initiator_but_come_once(settings):
    settings.STARTING_CREDITS = "5"
    user = UserFactory()
    services.open_wallet(user=user)
    starting = CreditTransaction.objects.get(wallet__user=user)
    assert (starting.reason, starting.initiated_by_id) == (services.STARTING_CREDITS_REASON, None)
    assert check_ledger().ok
    second = fund(user, "5")
    corrupt(
        "UPDATE billing_credittransaction SET reason = %s, initiated_by_id = NULL WHERE id = %s",
        [services.STARTING_CREDITS_REASON, second.pk],
    )
    assert problems(starting.wallet_id) == [
        f"2 starting-credits grants (rows {starting.pk}, {second.pk}); a wallet has one at most"
    ]


# --- API key limits and their open holds ------------------------------------------------------


def test_check_ledger_names_a_key_limit_whose_held_is_not_its_open_holds(user):
    from billing.models import SpendLimit

    fund(user, "10")
    limit = SpendLimit.objects.create(wallet=user.wallet, kind=SpendLimit.Kind.KEY)
    services.reserve(user=user, amount=Decimal(3), spend_limit_id=limit.pk)
    limit.refresh_from_db()
    assert limit.held == Decimal(3)
    assert check_ledger().ok
    corrupt("UPDATE billing_spendlimit SET held = 5 WHERE id = %s", [limit.pk])
    assert problems(user.wallet.pk) == [
        f"key limit {limit.pk}: held 5.000000 != sum of 1 open holds 3.000000"
    ]
    corrupt("UPDATE billing_credithold SET status = 'released' WHERE spend_limit_id = %s", [limit.pk])
    assert f"key limit {limit.pk}: held 5.000000 != sum of 0 open holds 0.000000" in problems(user.wallet.pk)


# --- expiries ------------------------------------------------------------------------------------


@pytest.fixture
def two_expired_lots(user, staff_user):
    """Two lots of the user that expired, each by its own expiry row, on a clean ledger."""
    soon = timezone.now() + timedelta(hours=1)
    rows = [
        services.grant(user=user, amount=amount, reason="trial", initiated_by=staff_user, expires_at=soon)
        for amount in ("3", "4")
    ]
    assert expire_lots(now=soon + timedelta(minutes=1)) == 2
    assert check_ledger().ok
    lots = [CreditLot.objects.get(transaction=row) for row in rows]
    expiries = [LotAllocation.objects.get(lot=lot, transaction__kind="expiry").transaction for lot in lots]
    return lots, expiries


def test_check_ledger_names_an_expiry_of_a_lot_that_never_expires(two_expired_lots):
    (lot, _), (expiry, _) = two_expired_lots
    corrupt("UPDATE billing_creditlot SET expires_at = NULL WHERE id = %s", [lot.pk])
    assert problems(lot.wallet_id) == [f"expiry row {expiry.pk} took from lot {lot.pk}, which never expires"]


def test_check_ledger_names_a_lot_that_expired_twice(two_expired_lots):
    (first, second), (first_expiry, second_expiry) = two_expired_lots
    corrupt(
        "UPDATE billing_lotallocation SET lot_id = %s WHERE transaction_id = %s", [first.pk, second_expiry.pk]
    )
    assert (
        f"lot {first.pk} expired 2 times (rows {first_expiry.pk}, {second_expiry.pk}); a lot expires once"
        in problems(first.wallet_id)
    )
