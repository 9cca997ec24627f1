from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from billing import services
from billing.models import CreditHold, LLMCallEvent, Wallet
from billing.reconcile import check_ledger
from billing.services import charging, holds
from tests.database import synchronous_commit
from tests.factories import ModelPriceFactory, UserFactory
from tests.plans import assert_reads_at_most, execute_as_prepared, plan_as_kept

pytestmark = pytest.mark.django_db


def wallet(user) -> Wallet:
    return Wallet.objects.get(user=user)


def test_reserve_then_settle_moves_held_and_balance(funded, price):
    r = services.reserve(user=funded, amount=Decimal("3"))
    assert not r.refused
    assert (r.balance, r.available) == (Decimal("10"), Decimal("10"))
    assert (wallet(funded).balance, wallet(funded).held) == (Decimal("10"), Decimal("3"))
    assert wallet(funded).available == Decimal("7")

    result = services.charge(
        hold=r.hold, user=funded, price=price, provider="echo", input_tokens=500, output_tokens=250
    )
    assert result.event.cost == Decimal("1")  # 0.5 + 0.5: actual, not the estimate
    assert result.balance_after == Decimal("9")
    assert (wallet(funded).balance, wallet(funded).held) == (Decimal("9"), Decimal("0"))
    hold = CreditHold.objects.get(pk=r.hold.pk)
    assert (hold.status, hold.llm_call_id) == ("settled", result.event.pk)
    assert check_ledger().ok


def test_failed_call_releases_the_hold_and_debits_nothing(funded, price):
    r = services.reserve(user=funded, amount=Decimal("3"))
    event = services.record_failed_call(
        user=funded, model=price.model, provider="openai", error="boom", price=price, hold=r.hold
    )
    assert event.status == "error"
    assert (wallet(funded).balance, wallet(funded).held) == (Decimal("10"), Decimal("0"))
    assert CreditHold.objects.get(pk=r.hold.pk).status == "released"
    assert check_ledger().ok


def test_release_is_idempotent(funded):
    r = services.reserve(user=funded, amount=Decimal("3"))
    services.release(hold=r.hold)
    services.release(hold=r.hold)
    assert wallet(funded).held == 0
    assert check_ledger().ok


def test_check_ledger_names_a_wallet_whose_held_disagrees_with_its_open_holds(funded):
    services.reserve(user=funded, amount=Decimal("3"))
    assert check_ledger().ok
    Wallet.objects.filter(user=funded).update(held=Decimal("1"))
    result = check_ledger()
    assert not result.ok
    assert "open holds" in result.discrepancies[0].problem


def _abandon(user, amount="3"):
    """A worker that reserved and died: the hold stays open, now past its expiry."""
    r = services.reserve(user=user, amount=Decimal(amount))
    CreditHold.objects.filter(pk=r.hold.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    return r.hold


def test_abandoned_hold_is_released_by_the_command_once(funded):
    fresh = services.reserve(user=funded, amount=Decimal("2")).hold  # not expired: must stay
    hold = _abandon(funded)
    out = StringIO()
    call_command("release_expired_holds", stdout=out)
    assert "Released 1 expired hold." in out.getvalue()
    call_command("release_expired_holds", stdout=out)  # idempotent
    assert CreditHold.objects.get(pk=hold.pk).status == "expired"
    assert CreditHold.objects.get(pk=fresh.pk).status == "held"
    assert wallet(funded).held == Decimal("2")
    assert check_ledger().ok


@override_settings(CREDIT_ENFORCEMENT_ENABLED=True)
def test_abandoned_hold_is_released_by_the_next_reserve(user, staff_user):
    services.grant(user=user, amount="1", reason="x", initiated_by=staff_user)
    _abandon(user, amount="1")  # the whole balance is held by a dead turn
    r = services.reserve(user=user, amount=Decimal("1"))
    assert not r.refused, "the expired hold must not block the next turn"
    assert wallet(user).held == Decimal("1")
    assert check_ledger().ok


def test_settling_after_expiry_still_debits_and_keeps_held_consistent(funded, price):
    hold = _abandon(funded)
    services.release_expired_holds()
    services.charge(hold=hold, user=funded, price=price, provider="echo", input_tokens=1000, output_tokens=0)
    assert (wallet(funded).balance, wallet(funded).held) == (Decimal("9"), Decimal("0"))
    assert check_ledger().ok


@override_settings(CREDIT_ENFORCEMENT_ENABLED=True)
def test_whole_balance_held_is_refused_with_balance_and_available(funded):
    services.reserve(user=funded, amount=Decimal("10"))
    r = services.reserve(user=funded, amount=Decimal("1"))
    assert r.refused and r.hold is None
    assert (r.balance, r.available) == (Decimal("10"), Decimal("0"))
    assert CreditHold.objects.count() == 1


# Every override against both settings: (enforcement, setting) -> refused when empty?
CASES = [
    ("default", False, False),
    ("default", True, True),
    ("exempt", False, False),
    ("exempt", True, False),
    ("enforced", False, True),
    ("enforced", True, True),
]


@pytest.mark.parametrize(("enforcement", "setting", "refused"), CASES)
def test_override_decides_refusal_of_an_empty_wallet(user, enforcement, setting, refused):
    Wallet.objects.filter(user=user).update(enforcement=enforcement)
    with override_settings(CREDIT_ENFORCEMENT_ENABLED=setting):
        r = services.reserve(user=user, amount=Decimal("1"))
    assert r.refused is refused
    assert CreditHold.objects.count() == (0 if refused else 1)


@pytest.mark.parametrize(("enforcement", "setting", "_"), CASES)
def test_a_wallet_with_credit_is_never_refused(funded, enforcement, setting, _):
    Wallet.objects.filter(user=funded).update(enforcement=enforcement)
    with override_settings(CREDIT_ENFORCEMENT_ENABLED=setting):
        assert not services.reserve(user=funded, amount=Decimal("1")).refused


@pytest.mark.parametrize(
    ("enforcement", "setting", "shadow_setting", "shadow"),
    [
        ("default", False, True, True),
        ("default", False, False, False),
        ("exempt", False, True, False),  # never refused, so never a would-be refusal
    ],
)
def test_shadow_refusal_is_flagged_on_the_event(user, price, enforcement, setting, shadow_setting, shadow):
    Wallet.objects.filter(user=user).update(enforcement=enforcement)
    with override_settings(CREDIT_ENFORCEMENT_ENABLED=setting, CREDIT_ENFORCEMENT_SHADOW=shadow_setting):
        r = services.reserve(user=user, amount=Decimal("1"))
    assert not r.refused
    assert r.shadow_refusal is shadow
    event = services.charge(
        hold=r.hold, user=user, price=price, provider="echo", input_tokens=10, output_tokens=10
    ).event
    assert LLMCallEvent.objects.get(pk=event.pk).shadow_refusal is shadow


def test_no_shadow_refusal_while_the_wallet_has_credit(funded):
    assert not services.reserve(user=funded, amount=Decimal("1")).shadow_refusal


def test_set_enforcement_changes_the_override_and_logs_the_staff_user(user, staff_user, caplog):
    with caplog.at_level("INFO", logger="billing.services"):
        services.set_enforcement(user=user, enforcement="exempt", changed_by=staff_user)
    assert wallet(user).enforcement == "exempt"
    record = next(r for r in caplog.records if r.getMessage() == "wallet enforcement changed")
    assert (record.changed_by, record.__dict__["from"], record.to) == (staff_user.pk, "default", "exempt")


def test_set_enforcement_refuses_unknown_values_and_non_staff(user):
    from billing.exceptions import BillingError

    with pytest.raises(BillingError):
        services.set_enforcement(user=user, enforcement="sometimes", changed_by=user)
    with pytest.raises(BillingError):
        services.set_enforcement(user=user, enforcement="exempt", changed_by=user)
    assert wallet(user).enforcement == "default"


@pytest.mark.django_db(transaction=True)
def test_a_reservation_on_its_own_relaxes_only_its_own_commit(user, staff_user):
    """synchronous_commit off applies to the reservation's own transaction, never to the session after it."""
    services.grant(user=user, amount="10", reason="x", initiated_by=staff_user)

    assert not services.reserve(user=user, amount=Decimal("1")).refused

    assert synchronous_commit() == "on"


def test_a_reservation_inside_a_callers_transaction_leaves_its_commit_synchronous(funded):
    """In a caller's transaction (which may move credits) the reservation must not relax the commit."""
    from django.db import transaction

    with transaction.atomic():
        assert not services.reserve(user=funded, amount=Decimal("1")).refused
        assert synchronous_commit() == "on"
        hold = services.reserve(user=funded, amount=Decimal("1")).hold
        services.record_progress(
            hold=hold,
            price=ModelPriceFactory(),
            provider="echo",
            purpose="chat",
            input_tokens=1,
            output_tokens=0,
        )
        assert synchronous_commit() == "on"


def wallet_with_closed_holds() -> Wallet:
    """Another user's wallet with 2,000 closed holds and none open: the hold table as it usually is."""
    other = Wallet.objects.get(user=UserFactory())
    CreditHold.objects.bulk_create(
        CreditHold(wallet=other, amount=1, status="settled", expires_at=timezone.now()) for _ in range(2000)
    )
    return other


def test_a_hold_is_closed_by_its_key_however_many_holds_are_open(funded, price, monkeypatch):
    """The charge and a stream's progress find their hold by its key (one row), not by
    scanning every open hold: a generic plan made while few holds were open (the partial indexes of
    open holds look tiny then) is kept by the connection when thousands are open."""
    other = wallet_with_closed_holds()
    sent = plan_as_kept(monkeypatch, charging, holds, analyze="billing_credithold")
    for settle in (
        lambda hold: services.charge(
            hold=hold, user=funded, price=price, provider="echo", input_tokens=1, output_tokens=1
        ),
        lambda hold: services.record_progress(
            hold=hold, price=price, provider="echo", purpose="chat", input_tokens=1, output_tokens=1
        ),
    ):
        settle(services.reserve(user=funded, amount=Decimal("1")).hold)  # each statement planned now
    CreditHold.objects.bulk_create(  # then 500 streams open at once
        CreditHold(wallet=other, amount=1, status="held", expires_at=timezone.now() + timedelta(hours=1))
        for _ in range(500)
    )

    by_key = [sql for sql in sent if "WHERE id = %(hold_id)s" in sql]
    assert len(by_key) == 2, list(sent)
    for sql in by_key:
        assert_reads_at_most("billing_credithold", execute_as_prepared(sql, sent[sql]), 1)


def test_a_reservation_expires_its_wallets_holds_without_reading_every_expired_hold(
    funded, price, monkeypatch
):
    """The reservation's first step expires the wallet's own stale holds: it reads those, not every
    expired hold of every wallet that only the sweep may close (a stream's whose process died, with
    progress to charge; an API key's), however many wait for it (a crashed instance's streams, or
    the worker down), with the plan a pooled connection keeps."""
    other = wallet_with_closed_holds()
    sent = plan_as_kept(monkeypatch, holds, analyze="billing_credithold")
    services.release(hold=services.reserve(user=funded, amount=Decimal("1")).hold)  # planned now
    stale = timezone.now() - timedelta(minutes=1)
    CreditHold.objects.bulk_create(  # then 500 holds wait for the sweep: streams with progress
        CreditHold(
            wallet=other,
            amount=1,
            status="held",
            expires_at=stale,
            progress_at=stale,
            progress_price=price,
            progress_provider="echo",
            progress_purpose="chat",
            progress_input_tokens=1,
            progress_output_tokens=1,
        )
        for _ in range(500)
    )

    ((sql, params),) = sent.items()
    assert_reads_at_most("billing_credithold", execute_as_prepared(sql, {**params, "now": timezone.now()}), 1)


def test_a_holds_worst_case_is_its_cost_up_to_what_one_call_may_hold():
    from billing.exceptions import CallTooCostly
    from billing.pricing import CALL_COST_MAX, PRICE_MAX

    dear = ModelPriceFactory.build(
        model="dear-1", input_price_per_1k=Decimal(PRICE_MAX), output_price_per_1k=Decimal(PRICE_MAX)
    )
    at_the_line = CALL_COST_MAX * 1000 // PRICE_MAX  # tokens whose cost is exactly CALL_COST_MAX

    assert (
        services.hold_amount(price=dear, input_tokens=at_the_line - 1024, output_tokens=1024) == CALL_COST_MAX
    )
    for tokens in (at_the_line + 1, 10**40):  # past the line; past what a Decimal keeps (no InvalidOperation)
        with pytest.raises(CallTooCostly, match="dear-1") as refused:
            services.hold_amount(price=dear, input_tokens=0, output_tokens=tokens)
        assert refused.value.status_code == 400 and refused.value.code == "call_too_costly"
    assert not CreditHold.objects.exists()
