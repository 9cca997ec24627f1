"""Credit lots: the burn order and every tie-break, debits spanning lots, debt, expiry, refunds; check_ledger after each."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from billing import services
from billing.exceptions import InvalidGrant
from billing.lot_selectors import live_lots, next_expiry
from billing.models import CreditLot, CreditTransaction, LotAllocation, Purchase, Wallet, WalletEvent
from billing.reconcile import check_ledger
from billing.services.ledger import append
from billing.services.lots import expire_lots
from tests.factories import ModelPriceFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def per_credit():
    """A price at which 1000 input tokens cost exactly 1 credit."""
    return ModelPriceFactory(input_price_per_1k=D("1"), output_price_per_1k=D("0"))


def spend(user, price, credits: str):
    tokens = int(D(credits) * 1000)
    return services.charge(user=user, price=price, provider="echo", input_tokens=tokens, output_tokens=0)


def credit(user, amount: str, **terms) -> CreditLot:
    """A row written by the ledger's own append (around the services' checks), initiated by staff as
    check_ledger requires of grants, adjustments and refunds."""
    kind = terms.pop("kind", "grant")
    if kind in ("grant", "adjustment", "refund"):
        terms.setdefault("initiated_by", StaffUserFactory())
    row = append(user_id=user.pk, kind=kind, amount=D(amount), reason="test", **terms)
    return CreditLot.objects.get(transaction=row)


def taken_from(row_id: int) -> list[tuple[int | None, Decimal]]:
    return list(
        LotAllocation.objects.filter(transaction_id=row_id).order_by("id").values_list("lot_id", "amount")
    )


def assert_consistent(user):
    result = check_ledger(user_id=user.pk)
    assert result.ok, result.discrepancies


def test_grant_opens_a_promotional_lot_and_a_purchase_a_paid_one_that_never_expires(user, staff_user):
    row = services.grant(user=user, amount="5", reason="welcome", initiated_by=staff_user)
    lot = row.lot
    assert (lot.source, lot.category, lot.priority, lot.expires_at) == ("grant", "promotional", 50, None)
    assert (lot.amount, lot.remaining) == (D(5), D(5))
    bought = credit(user, "7", kind="purchase", idempotency_key="cs_test_1")
    assert (bought.source, bought.category, bought.expires_at) == ("purchase", "paid", None)
    # The purchase the webhook records with such a row (check_ledger holds every purchase row to one).
    Purchase.objects.create(
        user=user,
        credits=7,
        amount=D("0.07"),
        currency="usd",
        status=Purchase.Status.PAID,
        stripe_session_id="cs_test_1",
        transaction_id=bought.transaction_id,
        paid_at=timezone.now(),
    )
    assert_consistent(user)


def test_burn_order_follows_priority_then_expiry_then_promotional_then_effective_at_then_id(user, per_credit):
    now = timezone.now()
    soon, later = now + timedelta(days=1), now + timedelta(days=2)
    early, late = now - timedelta(hours=2), now - timedelta(hours=1)
    expected = [
        credit(user, "1", priority=10, category="paid"),  # lowest priority number first
        credit(user, "1", expires_at=soon, category="paid"),  # then the soonest expiry, even paid
        credit(user, "1", expires_at=later, category="promotional"),
        credit(user, "1", category="promotional", created_at=early),  # never-expiring last; promo first
        credit(user, "1", category="promotional", created_at=late),  # then by effective_at
        credit(user, "1", category="paid", created_at=early),  # paid after promotional
        credit(user, "1", category="paid", created_at=early),  # same effective_at: by id
    ]
    # Created out of order on purpose: the order comes from the terms, not from insertion.
    assert [lot.pk for lot in live_lots(wallet_id=expected[0].wallet_id)] == [lot.pk for lot in expected]
    burned = []
    for _ in expected:
        result = spend(user, per_credit, "1")
        burned.extend(lot_id for lot_id, _ in taken_from(result.transaction_id))
    assert burned == [lot.pk for lot in expected]
    assert Wallet.objects.get(user=user).balance == 0
    assert_consistent(user)


def test_burn_order_is_independent_of_creation_order(user, per_credit):
    paid = credit(user, "2", category="paid")
    promo = credit(user, "2", category="promotional")
    urgent = credit(user, "2", category="paid", priority=0)
    result = spend(user, per_credit, "3")
    assert taken_from(result.transaction_id) == [(urgent.pk, D(2)), (promo.pk, D(1))]
    paid.refresh_from_db()
    assert paid.remaining == D(2)
    assert_consistent(user)


def test_a_debit_spanning_three_lots_takes_each_in_order_and_records_each_part(user, per_credit):
    first = credit(user, "1.5", priority=1)
    second = credit(user, "1", priority=2)
    third = credit(user, "2", priority=3)
    result = spend(user, per_credit, "3.25")
    assert taken_from(result.transaction_id) == [
        (first.pk, D("1.5")),
        (second.pk, D(1)),
        (third.pk, D("0.75")),
    ]
    assert [
        lot.remaining
        for lot in CreditLot.objects.filter(pk__in=[first.pk, second.pk, third.pk]).order_by("priority")
    ] == [
        D(0),
        D(0),
        D("1.25"),
    ]
    assert Wallet.objects.get(user=user).balance == D("1.25")
    assert_consistent(user)


def test_a_charge_beyond_the_live_lots_leaves_debt_that_the_next_credit_pays_first(
    user, per_credit, staff_user
):
    lot = credit(user, "1")
    result = spend(user, per_credit, "3")
    assert taken_from(result.transaction_id) == [(lot.pk, D(1)), (None, D(2))]
    wallet = Wallet.objects.get(user=user)
    assert (wallet.balance, wallet.debt) == (D(-2), D(2))
    assert_consistent(user)

    small = services.grant(user=user, amount="0.5", reason="partial", initiated_by=staff_user).lot
    assert (small.debt_paid, small.remaining) == (D("0.5"), D(0))
    big = services.grant(user=user, amount="5", reason="top-up", initiated_by=staff_user).lot
    assert (big.debt_paid, big.remaining) == (D("1.5"), D("3.5"))
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.debt) == (D("3.5"), D(0))
    assert_consistent(user)


def test_a_negative_adjustment_burns_lots_like_a_charge(user, staff_user):
    promo = credit(user, "2", category="promotional")
    paid = credit(user, "2", category="paid")
    row = services.adjust(user=user, amount="-3", reason="clawback", initiated_by=staff_user)
    assert taken_from(row.pk) == [(promo.pk, D(2)), (paid.pk, D(1))]
    services.adjust(user=user, amount="-4", reason="more", initiated_by=staff_user)
    assert Wallet.objects.get(user=user).debt == D(3)
    services.adjust(user=user, amount="4", reason="back", initiated_by=staff_user)
    assert Wallet.objects.get(user=user).debt == D(0)
    assert_consistent(user)


def test_expiry_writes_one_row_for_what_is_left_once_and_the_lot_no_longer_burns(
    user, per_credit, staff_user
):
    now = timezone.now()
    expiring = services.grant(
        user=user, amount="4", reason="trial", initiated_by=staff_user, expires_at=now + timedelta(hours=1)
    ).lot
    lasting = credit(user, "10", category="paid")
    spend(user, per_credit, "1")  # from the expiring lot (sooner expiry first)
    later = now + timedelta(hours=2)
    assert expire_lots(now=later) == 1
    assert expire_lots(now=later) == 0  # once
    expiry = CreditTransaction.objects.get(kind="expiry")
    assert expiry.amount == D(-3) and expiry.initiated_by is None
    assert f"Lot {expiring.pk}" in expiry.reason
    assert taken_from(expiry.pk) == [(expiring.pk, D(3))]
    assert Wallet.objects.get(user=user).balance == D(10)
    assert_consistent(user)
    result = spend(user, per_credit, "1")
    assert taken_from(result.transaction_id) == [(lasting.pk, D(1))]


def test_a_lot_past_its_expiry_is_not_burned_before_the_job_runs(user, per_credit):
    lot = credit(user, "2", expires_at=timezone.now() + timedelta(hours=1))
    CreditLot.objects.filter(pk=lot.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    result = spend(user, per_credit, "1")
    assert taken_from(result.transaction_id) == [(None, D(1))]  # debt, not the expired credit
    assert expire_lots() == 1
    wallet = Wallet.objects.get(user=user)
    assert (wallet.balance, wallet.debt) == (D(-1), D(1))
    assert_consistent(user)


def test_credit_past_its_expiry_is_not_available_to_a_reservation_before_the_job_runs(user, settings):
    # The balance counts an expired lot until expire_lots writes it off (every minute), but no charge
    # can burn it: under enforcement it must not admit a call (it did: the whole debit went to debt).
    settings.CREDIT_ENFORCEMENT_ENABLED = True
    lot = credit(user, "5", expires_at=timezone.now() + timedelta(hours=1))
    CreditLot.objects.filter(pk=lot.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused = services.reserve(user=user, amount=D("0.5"))
    assert refused.refused and (refused.balance, refused.available) == (D(5), D(0))
    assert refused.refusal().facts()["available"] == "0.000000"
    credit(user, "1")  # a live lot beside it: that much is available
    allowed = services.reserve(user=user, amount=D("0.5"))
    assert not allowed.refused and allowed.available == D(1)
    services.release(hold=allowed.hold)
    # Enforcement off: admitted, and flagged as enforcement would have refused it once the live lot is held.
    settings.CREDIT_ENFORCEMENT_ENABLED, settings.CREDIT_ENFORCEMENT_SHADOW = False, True
    first = services.reserve(user=user, amount=D("1"))
    second = services.reserve(user=user, amount=D("1"))
    assert not first.shadow_refusal and second.shadow_refusal
    assert expire_lots() == 1
    assert_consistent(user)


def test_wallet_events_fire_on_a_crossing_caused_by_expiry(user, staff_user, settings):
    settings.LOW_BALANCE_THRESHOLD = "1"
    credit(user, "5", expires_at=timezone.now() + timedelta(minutes=5))
    expire_lots(now=timezone.now() + timedelta(minutes=10))
    wallet = Wallet.objects.get(user=user)
    assert set(WalletEvent.objects.filter(wallet=wallet).values_list("type", flat=True)) == {
        "wallet.low_balance",
        "wallet.depleted",
    }


def test_a_refund_after_the_debits_lot_expired_is_a_new_lot_without_expiry(user, per_credit, staff_user):
    lot = credit(user, "2", expires_at=timezone.now() + timedelta(hours=1))
    result = spend(user, per_credit, "1.5")
    expire_lots(now=timezone.now() + timedelta(hours=2))
    lot.refresh_from_db()
    assert lot.remaining == 0
    refund = services.refund(
        debit=result.transaction, amount=None, reason="bad answer", initiated_by=staff_user
    )
    assert (refund.lot.source, refund.lot.expires_at, refund.lot.remaining) == ("refund", None, D("1.5"))
    assert Wallet.objects.get(user=user).balance == D("1.5")
    assert_consistent(user)


def test_next_expiry_is_the_soonest_expiry_and_what_is_left_to_expire_then(user, per_credit):
    soon = timezone.now() + timedelta(days=1)
    credit(user, "2", expires_at=soon)
    credit(user, "3", expires_at=soon, priority=90)
    credit(user, "4", expires_at=soon + timedelta(days=1))
    credit(user, "5")
    spend(user, per_credit, "0.5")
    wallet_id = Wallet.objects.get(user=user).pk
    found = next_expiry(live_lots(wallet_id=wallet_id))
    assert (found.at, found.amount) == (soon, D("4.5"))
    assert next_expiry([]) is None


@pytest.mark.parametrize(
    ("terms", "field"),
    [
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "next tuesday"}, "expires_at"),
        ({"expires_at": "2099-12-31"}, "expires_at"),  # a date alone is not a moment
        ({"expires_at": "2099-12-31T00:00:00Z\x00"}, "expires_at"),
        ({"expires_at": "9999-12-31T23:59:59.999999-12:00"}, "expires_at"),  # year 10000 in UTC
        ({"expires_at": "9999-06-01T00:00:00Z"}, "expires_at"),  # past the latest a page can show
        ({"priority": 101}, "priority"),
        ({"priority": -1}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"priority": True}, "priority"),
        ({"category": "gold"}, "category"),
    ],
)
def test_grant_refuses_bad_lot_terms_on_the_field_and_writes_nothing(user, staff_user, terms, field):
    with pytest.raises(InvalidGrant) as refused:
        services.grant(user=user, amount="5", reason="x", initiated_by=staff_user, **terms)
    assert refused.value.field == field
    assert not CreditTransaction.objects.filter(wallet__user=user).exists()
    assert not CreditLot.objects.filter(wallet__user=user).exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2099-01-01T00:00", datetime(2099, 1, 1, tzinfo=UTC)),  # no offset: UTC, as the forms say
        ("2099-01-01 06:30:00", datetime(2099, 1, 1, 6, 30, tzinfo=UTC)),
        ("2099-01-01T00:00:00+02:00", datetime(2098, 12, 31, 22, 0, tzinfo=UTC)),
        ("  2099-01-01T00:00Z ", datetime(2099, 1, 1, tzinfo=UTC)),  # pasted with spaces
    ],
)
def test_grant_takes_an_expiry_with_or_without_an_offset(user, staff_user, text, expected):
    services.grant(user=user, amount="5", reason="x", initiated_by=staff_user, expires_at=text)
    assert CreditLot.objects.get(wallet__user=user).expires_at == expected


def test_check_ledger_names_a_lot_whose_remaining_was_changed_behind_the_services(user, per_credit):
    lot = credit(user, "3")
    spend(user, per_credit, "1")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE billing_creditlot SET remaining = remaining + 1 WHERE id = %s", [lot.pk])
    problems = [d.problem for d in check_ledger(user_id=user.pk).discrepancies]
    assert any(f"lot {lot.pk}: remaining" in p for p in problems)
    assert any("open lots hold" in p for p in problems)


def test_check_ledger_names_a_debit_whose_allocations_do_not_add_up(user, per_credit):
    credit(user, "3")
    result = spend(user, per_credit, "1")
    LotAllocation.objects.filter(transaction_id=result.transaction_id).update(amount=D("0.5"))
    problems = [d.problem for d in check_ledger(user_id=user.pk).discrepancies]
    assert any(f"row {result.transaction_id}: allocations add up to 0.5" in p for p in problems)


def test_opening_lots_give_a_ledger_written_around_the_services_its_lot_or_debt(user, staff_user):
    from billing.services.lots import open_opening_lots

    other = type(user).objects.create(username="bulk-debtor")
    for owner, amount in ((user, "7.5"), (other, "-2")):
        wallet = Wallet.objects.get(user=owner)
        CreditTransaction.objects.create(
            wallet=wallet,
            kind="adjustment",
            amount=D(amount),
            balance_after=D(amount),
            reason="bulk",
            initiated_by=staff_user,
        )
        Wallet.objects.filter(pk=wallet.pk).update(balance=D(amount))
    assert not check_ledger().ok
    open_opening_lots()
    open_opening_lots()  # once
    lot = CreditLot.objects.get(wallet__user=user)
    assert (lot.source, lot.category, lot.remaining, lot.expires_at) == ("opening", "paid", D("7.5"), None)
    assert Wallet.objects.get(user=other).debt == D(2)
    assert check_ledger().ok


def test_a_grant_replayed_with_other_lot_terms_answers_the_first_grant(user, staff_user):
    """API.md: the body that must match is the amount and the reason. A retry that recomputes a
    relative expiry (or leaves a term out) gets the first grant back, its lot as first given."""
    soon = timezone.now() + timedelta(days=3)
    first = services.grant(
        user=user, amount="5", reason="promo", initiated_by=staff_user, idempotency_key="k", expires_at=soon
    )
    for other in ({"expires_at": soon + timedelta(days=1)}, {"expires_at": None}, {"priority": 10}):
        terms = {"expires_at": soon, **other}
        again = services.grant(
            user=user, amount="5", reason="promo", initiated_by=staff_user, idempotency_key="k", **terms
        )
        assert again.replayed and again.pk == first.pk
    lot = CreditLot.objects.get(wallet__user=user)
    assert (lot.expires_at, lot.priority, lot.remaining) == (soon, 50, D(5))
