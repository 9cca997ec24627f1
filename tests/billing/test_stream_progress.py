"""Stream progress on a hold: recorded as a heartbeat, and charged (capped at the hold) when its worker died."""

import threading
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection
from django.utils import timezone

from billing import pricing, services
from billing.models import CreditHold, CreditTransaction, LLMCallEvent, Wallet
from billing.reconcile import check_ledger
from tests.factories import ModelPriceFactory, StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db


def wallet(user) -> Wallet:
    return Wallet.objects.get(user=user)


def progress(hold, price, *, input_tokens=100, output_tokens=50, purpose="chat") -> bool:
    return services.record_progress(
        hold=hold,
        price=price,
        provider="openai",
        purpose=purpose,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


def expire(hold) -> None:
    """The worker died: no progress came for a whole TTL, so the hold is past its expiry."""
    CreditHold.objects.filter(pk=hold.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_record_progress_writes_the_usage_so_far_and_pushes_the_expiry_one_ttl_on(funded, price, settings):
    settings.CREDIT_HOLD_TTL_SECONDS = 30
    hold = services.reserve(user=funded, amount=Decimal("3")).hold
    expire(hold)
    before = timezone.now()

    assert progress(hold, price, input_tokens=120, output_tokens=7, purpose="tool_followup") is True

    stored = CreditHold.objects.get(pk=hold.pk)
    assert stored.status == "held"
    assert (stored.progress_price_id, stored.progress_provider, stored.progress_purpose) == (
        price.pk,
        "openai",
        "tool_followup",
    )
    assert (stored.progress_input_tokens, stored.progress_output_tokens) == (120, 7)
    assert stored.progress_at >= before
    assert stored.expires_at >= before + timedelta(seconds=30)
    assert (wallet(funded).balance, wallet(funded).held) == (Decimal("10"), Decimal("3"))  # no money moved
    assert services.release_expired_holds() == 0  # the heartbeat keeps a live stream's hold open
    assert CreditHold.objects.get(pk=hold.pk).status == "held"


def test_record_progress_leaves_a_closed_hold_as_it_is(funded, price):
    hold = services.reserve(user=funded, amount=Decimal("3")).hold
    services.release(hold=hold)

    assert progress(hold, price) is False

    stored = CreditHold.objects.get(pk=hold.pk)
    assert (stored.status, stored.progress_at, stored.progress_output_tokens) == ("released", None, None)


def test_progress_is_recorded_whole_or_not_at_all(funded):
    hold = services.reserve(user=funded, amount=Decimal("3")).hold
    with pytest.raises(IntegrityError):
        CreditHold.objects.filter(pk=hold.pk).update(progress_at=timezone.now(), progress_output_tokens=5)


def test_an_expired_hold_with_progress_is_charged_once_with_it(funded, price, caplog):
    hold = services.reserve(user=funded, amount=Decimal("3")).hold
    progress(hold, price, input_tokens=500, output_tokens=250)
    expire(hold)

    with caplog.at_level("WARNING", logger="billing.services.holds"):
        assert services.release_expired_holds() == 1
    assert services.release_expired_holds() == 0  # closed: never charged again

    event = LLMCallEvent.objects.get(user=funded)
    assert (event.status, event.provider, event.purpose) == ("ok", "openai", "chat")
    assert (event.input_tokens, event.output_tokens, event.cost) == (500, 250, Decimal("1"))
    stored = CreditHold.objects.get(pk=hold.pk)
    assert (stored.status, stored.llm_call_id) == ("settled", event.pk)
    debit = CreditTransaction.objects.get(wallet__user=funded, kind="debit")
    assert (debit.amount, debit.llm_call_id) == (Decimal("-1"), event.pk)
    assert (wallet(funded).balance, wallet(funded).held) == (Decimal("9"), Decimal("0"))
    record = next(
        r for r in caplog.records if r.getMessage() == "expired hold charged with its stream progress"
    )
    assert (record.hold_id, record.user_id, record.output_tokens) == (hold.pk, funded.pk, 250)
    assert Decimal(record.cost) == event.cost
    assert check_ledger().ok


def test_an_expired_hold_with_progress_is_charged_at_most_its_amount(funded, price):
    hold = services.reserve(user=funded, amount=Decimal("0.5")).hold
    progress(hold, price, input_tokens=500, output_tokens=250)  # 1.000000 at the price: above the hold
    expire(hold)

    assert services.release_expired_holds() == 1

    event = LLMCallEvent.objects.get(user=funded)
    assert (event.input_tokens, event.output_tokens, event.cost) == (500, 250, Decimal("0.5"))
    assert (wallet(funded).balance, wallet(funded).held) == (Decimal("9.5"), Decimal("0"))
    assert check_ledger().ok


def test_expiry_releases_holds_without_progress_and_charges_those_with_it_in_one_run(funded, price):
    bare = services.reserve(user=funded, amount=Decimal("2")).hold
    metered = services.reserve(user=funded, amount=Decimal("3")).hold
    progress(metered, price, input_tokens=500, output_tokens=0)
    expire(bare)
    expire(metered)
    out = StringIO()

    call_command("release_expired_holds", stdout=out)

    assert "Released 2 expired holds." in out.getvalue()
    assert CreditHold.objects.get(pk=bare.pk).status == "expired"
    assert CreditHold.objects.get(pk=metered.pk).status == "settled"
    assert LLMCallEvent.objects.get(user=funded).cost == Decimal("0.5")
    assert (wallet(funded).balance, wallet(funded).held) == (Decimal("9.5"), Decimal("0"))
    assert check_ledger().ok


def test_reserve_expires_stale_holds_but_leaves_one_with_progress_for_the_job(funded, price):
    bare = services.reserve(user=funded, amount=Decimal("2")).hold
    metered = services.reserve(user=funded, amount=Decimal("3")).hold
    progress(metered, price)
    expire(bare)
    expire(metered)

    services.reserve(user=funded, amount=Decimal("1"))

    assert CreditHold.objects.get(pk=bare.pk).status == "expired"
    assert CreditHold.objects.get(pk=metered.pk).status == "held"  # owed a charge: the job's to close
    assert wallet(funded).held == Decimal("4")
    assert check_ledger().ok
    assert services.release_expired_holds() == 1
    assert CreditHold.objects.get(pk=metered.pk).status == "settled"
    assert check_ledger().ok


def test_a_charge_against_a_hold_records_the_tokens_and_debits_at_most_the_hold(funded, price):
    """Whatever the provider reports (a tokenizer that counts CJK text at a token a character, say),
    a call costs at most the worst case its hold reserved: what enforcement and the caps counted on."""
    hold = services.reserve(user=funded, amount=Decimal("0.75")).hold

    result = services.charge(
        user=funded, price=price, provider="echo", input_tokens=500, output_tokens=250, hold=hold
    )

    assert (result.event.input_tokens, result.event.output_tokens) == (500, 250)
    assert result.event.cost == LLMCallEvent.objects.get().cost == Decimal("0.75")
    assert result.transaction.amount == Decimal("-0.75")
    assert "capped" in result.transaction.reason
    assert (wallet(funded).balance, wallet(funded).held) == (Decimal("9.25"), Decimal("0"))
    assert check_ledger().ok


def test_a_charge_within_its_hold_is_the_cost_itself(funded, price):
    hold = services.reserve(user=funded, amount=Decimal("3")).hold
    result = services.charge(
        user=funded, price=price, provider="echo", input_tokens=500, output_tokens=0, hold=hold
    )
    assert result.event.cost == Decimal("0.5")
    assert "capped" not in result.transaction.reason
    assert (wallet(funded).balance, wallet(funded).held) == (Decimal("9.5"), Decimal("0"))


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_expiry_runs_charge_a_hold_with_progress_exactly_once():
    user = UserFactory()
    services.grant(user=user, amount="10", reason="x", initiated_by=StaffUserFactory())
    price = ModelPriceFactory(input_price_per_1k=Decimal("1"), output_price_per_1k=Decimal("2"))
    holds = [services.reserve(user=user, amount=Decimal("1")).hold for _ in range(5)]
    for hold in holds:
        progress(hold, price, input_tokens=100, output_tokens=100)
        expire(hold)
    barrier = threading.Barrier(2)
    counts: list[int] = []

    def run():
        try:
            barrier.wait()
            counts.append(services.release_expired_holds())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(counts) == 2 and sum(counts) == 5
    assert LLMCallEvent.objects.filter(user=user).count() == 5
    assert CreditTransaction.objects.filter(wallet__user=user, kind="debit").count() == 5
    assert set(CreditHold.objects.values_list("status", flat=True)) == {"settled"}
    assert (wallet(user).balance, wallet(user).held) == (Decimal("8.5"), Decimal("0"))
    assert check_ledger().ok


def test_an_expired_hold_is_charged_at_the_price_it_was_reserved_at_not_one_set_since(funded, price):
    """Staff edit a price row in place; a stream whose worker died before the edit is charged, at the
    sweep, what its call cost when it ran, as a live stream would be (history is never re-priced)."""
    hold = services.reserve(user=funded, amount=Decimal("3")).hold
    progress(hold, price, input_tokens=100, output_tokens=50)
    pricing.update_price(price=price, input_price_per_1k=Decimal("5"), output_price_per_1k=Decimal("10"))
    expire(hold)

    assert services.release_expired_holds() == 1

    event = LLMCallEvent.objects.get()
    assert (event.input_price_per_1k, event.output_price_per_1k) == (Decimal("1"), Decimal("2"))
    assert event.cost == Decimal("0.2")  # 100 in at 1 per 1k, 50 out at 2 per 1k
    assert wallet(funded).balance == Decimal("9.8")
    assert check_ledger().ok
