from decimal import Decimal

import pytest
from django.test import override_settings

from billing import services
from billing.exceptions import IdempotencyConflict, InitiatorNotStaff, InvalidAmount, InvalidGrant
from billing.models import CreditTransaction, LLMCallEvent, Wallet
from billing.reconcile import check_ledger
from core.errors import InvalidInput
from tests.factories import ModelPriceFactory, StaffUserFactory, UserFactory, beyond_the_support_limit

pytestmark = pytest.mark.django_db


def balance_of(user) -> Decimal:
    return Wallet.objects.get(user=user).balance


def test_every_new_user_gets_one_empty_wallet(user):
    assert Wallet.objects.filter(user=user).count() == 1
    assert balance_of(user) == 0
    assert not CreditTransaction.objects.filter(wallet__user=user).exists()


@override_settings(STARTING_CREDITS=Decimal("5"))
def test_starting_credits_are_a_system_grant():
    user = UserFactory()
    row = CreditTransaction.objects.get(wallet__user=user)
    assert (row.kind, row.amount, row.balance_after) == ("grant", Decimal("5"), Decimal("5"))
    assert row.initiated_by is None
    assert row.reason == "Starting credits"
    assert balance_of(user) == Decimal("5")


def test_createsuperuser_path_opens_a_wallet():
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-long-enough-1")
    assert Wallet.objects.filter(user=admin).exists()


def test_grant_writes_row_and_balance_with_attribution(user, staff_user):
    row = services.grant(user=user, amount="12.5", reason="Welcome", initiated_by=staff_user)
    assert row.replayed is False
    assert (row.kind, row.amount, row.balance_after) == ("grant", Decimal("12.5"), Decimal("12.5"))
    assert row.initiated_by == staff_user
    assert balance_of(user) == Decimal("12.5")
    row2 = services.grant(user=user, amount=Decimal("0.000001"), reason="x", initiated_by=staff_user)
    assert row2.balance_after == Decimal("12.500001")


@pytest.mark.parametrize("amount", ["0", "-1", "10000.000001", "1.0000001", "abc", "NaN", "1e3", True])
def test_grant_rejects_bad_amounts_and_writes_nothing(user, staff_user, amount):
    with pytest.raises(InvalidAmount) as info:
        services.grant(user=user, amount=amount, reason="x", initiated_by=staff_user)
    assert info.value.field == "amount"
    assert not CreditTransaction.objects.exists()
    assert balance_of(user) == 0


def test_grant_accepts_the_upper_limit(user, staff_user):
    beyond_the_support_limit(staff_user)  # the edge is the service's maximum, not SUPPORT_GRANT_LIMIT
    services.grant(user=user, amount="10000", reason="max", initiated_by=staff_user)
    assert balance_of(user) == Decimal("10000")


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501, None, 5])
def test_grant_requires_a_reason(user, staff_user, reason):
    with pytest.raises(InvalidGrant):
        services.grant(user=user, amount="1", reason=reason, initiated_by=staff_user)
    assert not CreditTransaction.objects.exists()


def test_grant_refuses_a_non_staff_initiator(user):
    other = UserFactory()
    with pytest.raises(InitiatorNotStaff):
        services.grant(user=user, amount="1", reason="x", initiated_by=other)
    with pytest.raises(InitiatorNotStaff):
        services.grant(user=user, amount="1", reason="x", initiated_by=None)
    inactive = StaffUserFactory(is_active=False)
    with pytest.raises(InitiatorNotStaff):
        services.grant(user=user, amount="1", reason="x", initiated_by=inactive)
    assert not CreditTransaction.objects.exists()


def test_idempotent_replay_returns_first_row_and_writes_nothing(user, staff_user):
    first = services.grant(
        user=user, amount="10", reason="refund", initiated_by=staff_user, idempotency_key="k-1"
    )
    again = services.grant(
        user=user, amount="10.000000", reason="refund", initiated_by=staff_user, idempotency_key="k-1"
    )
    assert again.pk == first.pk
    assert again.replayed is True
    assert again.balance_after == Decimal("10")
    assert CreditTransaction.objects.count() == 1
    assert balance_of(user) == Decimal("10")


def test_idempotency_key_is_scoped_to_the_wallet(user, staff_user):
    other = UserFactory()
    services.grant(user=user, amount="1", reason="x", initiated_by=staff_user, idempotency_key="same")
    services.grant(user=other, amount="1", reason="x", initiated_by=staff_user, idempotency_key="same")
    assert CreditTransaction.objects.count() == 2


@pytest.mark.parametrize(("amount", "reason"), [("11", "refund"), ("10", "other reason")])
def test_same_key_with_another_body_is_a_conflict(user, staff_user, amount, reason):
    services.grant(user=user, amount="10", reason="refund", initiated_by=staff_user, idempotency_key="k-1")
    with pytest.raises(IdempotencyConflict):
        services.grant(
            user=user, amount=amount, reason=reason, initiated_by=staff_user, idempotency_key="k-1"
        )
    assert CreditTransaction.objects.count() == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "é", "new\nline"])
def test_idempotency_key_must_be_printable_ascii(user, staff_user, key):
    with pytest.raises(InvalidInput) as refused:
        services.grant(user=user, amount="1", reason="x", initiated_by=staff_user, idempotency_key=key)
    assert refused.value.field == "idempotency_key"
    assert not CreditTransaction.objects.exists()


def test_charge_prices_each_direction_and_quantizes_once(user):
    # 1234 in x 0.333333/1k = 0.411332922; 567 out x 1.777777/1k = 1.007999559; sum 1.419332481
    price = ModelPriceFactory(input_price_per_1k=Decimal("0.333333"), output_price_per_1k=Decimal("1.777777"))
    result = services.charge(user=user, price=price, provider="echo", input_tokens=1234, output_tokens=567)
    assert result.event.cost == Decimal("1.419332")
    assert result.transaction.amount == Decimal("-1.419332")
    assert result.transaction.kind == "debit"
    assert result.transaction.llm_call == result.event
    assert result.transaction.initiated_by is None
    assert result.balance_after == Decimal("-1.419332")  # no enforcement here: may go negative
    assert balance_of(user) == Decimal("-1.419332")
    assert (result.event.input_price_per_1k, result.event.output_price_per_1k) == (
        Decimal("0.333333"),
        Decimal("1.777777"),
    )


def test_charge_rounds_half_up_once_not_per_direction(user):
    # Each direction alone is 0.0000005 (would round up twice to 0.000002); summed first it is 0.000001.
    price = ModelPriceFactory(input_price_per_1k=Decimal("0.000500"), output_price_per_1k=Decimal("0.000500"))
    result = services.charge(user=user, price=price, provider="echo", input_tokens=1, output_tokens=1)
    assert result.event.cost == Decimal("0.000001")


def test_price_change_never_rewrites_a_recorded_event(user):
    price = ModelPriceFactory(input_price_per_1k=Decimal("1"), output_price_per_1k=Decimal("1"))
    event = services.charge(user=user, price=price, provider="echo", input_tokens=1000, output_tokens=0).event
    price.input_price_per_1k = Decimal("9")
    price.save()
    event.refresh_from_db()
    assert (event.cost, event.input_price_per_1k) == (Decimal("1"), Decimal("1"))


def test_a_free_call_records_the_event_but_no_debit(user):
    price = ModelPriceFactory(input_price_per_1k=Decimal("0"), output_price_per_1k=Decimal("0"))
    result = services.charge(user=user, price=price, provider="echo", input_tokens=10, output_tokens=10)
    assert result.transaction is None
    assert result.event.cost == 0
    assert not CreditTransaction.objects.exists()


def test_failed_call_writes_an_error_event_and_no_ledger_row(user):
    price = ModelPriceFactory()
    event = services.record_failed_call(
        user=user, model=price.model, provider="openai", error="timeout", price=price
    )
    assert (event.status, event.cost, event.error) == ("error", Decimal("0"), "timeout")
    assert LLMCallEvent.objects.count() == 1
    assert not CreditTransaction.objects.exists()
    assert balance_of(user) == 0


def test_check_ledger_is_clean_after_mixed_activity_and_names_a_broken_wallet(user, staff_user):
    price = ModelPriceFactory()
    services.grant(user=user, amount="3", reason="x", initiated_by=staff_user)
    services.charge(user=user, price=price, provider="echo", input_tokens=100, output_tokens=100)
    assert check_ledger().ok
    # Corrupt the cached balance around the services: the check must name this wallet.
    Wallet.objects.filter(user=user).update(balance=Decimal("99"))
    result = check_ledger()
    assert not result.ok
    assert {d.wallet_id for d in result.discrepancies} == {user.wallet.pk}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_hold", [False, True])
def test_a_charge_for_a_user_without_a_wallet_writes_nothing(with_hold):
    """Outside any transaction (PostgreSQL: one statement, no BEGIN/COMMIT): all or nothing still."""
    from billing.models import CreditHold, UsageDaily

    price = ModelPriceFactory(model="nowallet-1")
    user = UserFactory()
    hold = None
    if with_hold:
        services.grant(user=user, amount="5", reason="funds", initiated_by=StaffUserFactory())
        hold = services.reserve(user=user, amount=Decimal("1")).hold
    else:
        Wallet.objects.filter(user=user).delete()
    events_before = LLMCallEvent.objects.count()

    if with_hold:
        # The hold's wallet must stay (holds point at it); charge another user who has none.
        other = UserFactory()
        Wallet.objects.filter(user=other).delete()
        with pytest.raises(Wallet.DoesNotExist):
            services.charge(
                hold=hold, user=other, price=price, provider="echo", input_tokens=10, output_tokens=10
            )
        assert CreditHold.objects.get(pk=hold.pk).status == CreditHold.Status.HELD
    else:
        with pytest.raises(Wallet.DoesNotExist):
            services.charge(user=user, price=price, provider="echo", input_tokens=10, output_tokens=10)

    assert LLMCallEvent.objects.count() == events_before
    assert not UsageDaily.objects.filter(model="nowallet-1").exists()
    assert not CreditTransaction.objects.filter(kind="debit").exists()
