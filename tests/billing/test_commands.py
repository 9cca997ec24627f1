from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from billing import services
from billing.models import CreditTransaction, LLMCallEvent, Wallet
from tests.factories import StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db


def grant_credits(*args) -> str:
    out = StringIO()
    call_command("grant_credits", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def alice():
    return UserFactory(username="alice", email="alice@example.com")


@pytest.fixture
def ops():
    return StaffUserFactory(username="ops")


@pytest.mark.parametrize("ref", ["alice", "alice@example.com", "ALICE@example.com", "id"])
def test_grant_credits_finds_the_user_by_username_email_or_id(alice, ops, ref):
    ref = str(alice.pk) if ref == "id" else ref
    out = grant_credits(ref, "12.5", "--reason", "Goodwill", "--initiated-by", "ops")
    assert "New balance: 12.500000" in out
    row = CreditTransaction.objects.get()
    assert (row.wallet.user, row.amount, row.initiated_by, row.reason) == (
        alice,
        Decimal("12.5"),
        ops,
        "Goodwill",
    )


def test_grant_credits_with_idempotency_key_grants_once(alice, ops):
    args = ("alice", "5", "--reason", "Promo", "--initiated-by", "ops", "--idempotency-key", "promo-1")
    grant_credits(*args)
    out = grant_credits(*args)
    assert "nothing new written" in out
    assert CreditTransaction.objects.count() == 1
    assert Wallet.objects.get(user=alice).balance == Decimal("5")


def test_grant_credits_shares_the_key_space_with_the_api_service(alice, ops):
    services.grant(user=alice, amount="5", reason="Promo", initiated_by=ops, idempotency_key="k")
    with pytest.raises(CommandError, match="idempotency key was already used"):
        grant_credits("alice", "6", "--reason", "Promo", "--initiated-by", "ops", "--idempotency-key", "k")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("alice", "0", "--reason", "x", "--initiated-by", "ops"), "greater than 0"),
        (("alice", "-1", "--reason", "x", "--initiated-by", "ops"), "greater than 0"),
        (("alice", "10000.000001", "--reason", "x", "--initiated-by", "ops"), "less than or equal to 10000"),
        (("alice", "1.0000001", "--reason", "x", "--initiated-by", "ops"), "6 decimal places"),
        (("alice", "1e3", "--reason", "x", "--initiated-by", "ops"), "valid number"),
        (("alice", "NaN", "--reason", "x", "--initiated-by", "ops"), "valid number"),
        (("alice", "ten", "--reason", "x", "--initiated-by", "ops"), "valid number"),
        (("alice", "5", "--reason", " ", "--initiated-by", "ops"), "reason is required"),
        (("nobody", "5", "--reason", "x", "--initiated-by", "ops"), "No user matches"),
        (("999999", "5", "--reason", "x", "--initiated-by", "ops"), "No user matches"),
        (("alice", "5", "--reason", "x", "--initiated-by", "alice"), "not an active staff user"),
        (("alice", "5", "--reason", "x", "--initiated-by", "ghost"), "No user named"),
        (
            ("alice", "5", "--reason", "x", "--initiated-by", "ops", "--idempotency-key", "é"),
            "printable ASCII",
        ),
    ],
)
def test_grant_credits_refuses_bad_input_with_one_line_and_writes_nothing(alice, ops, args, message):
    with pytest.raises(CommandError, match=message) as info:
        grant_credits(*args)
    assert "\n" not in str(info.value)
    assert not CreditTransaction.objects.exists()


def test_grant_credits_refuses_an_ambiguous_email(ops):
    UserFactory(username="a1", email="shared@example.com")
    UserFactory(username="a2", email="shared@example.com")
    with pytest.raises(CommandError, match="more than one user"):
        grant_credits("shared@example.com", "5", "--reason", "x", "--initiated-by", "ops")
    assert not CreditTransaction.objects.exists()


def test_check_ledger_command_passes_and_then_names_a_broken_wallet(alice, ops):
    services.grant(user=alice, amount="5", reason="x", initiated_by=ops)
    out = StringIO()
    call_command("check_ledger", stdout=out)
    assert "ledger is consistent" in out.getvalue()
    Wallet.objects.filter(user=alice).update(balance=Decimal("6"))
    err = StringIO()
    # Two: the balance disagrees with the rows, and with the open lots less the debt.
    with pytest.raises(CommandError, match="2 discrepancies"):
        call_command("check_ledger", stdout=StringIO(), stderr=err)
    assert f"wallet {alice.wallet.pk} (alice)" in err.getvalue()
    assert "open lots hold 5.000000" in err.getvalue()
    call_command("check_ledger", "--user", "ops", stdout=StringIO())  # another wallet alone is clean
    for nobody in ("", "  "):  # not "every wallet": a blank --user is a mistake, said as one
        with pytest.raises(CommandError, match="--user names nobody"):
            call_command("check_ledger", "--user", nobody, stdout=StringIO())


def test_seed_demo_is_idempotent():
    call_command("seed_demo", stdout=StringIO())
    counts = (CreditTransaction.objects.count(), LLMCallEvent.objects.count())
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert (CreditTransaction.objects.count(), LLMCallEvent.objects.count()) == counts
    assert "support / " in out.getvalue()
    assert "admin / " in out.getvalue()
    assert counts[1] > 20
    # The demo's support login is what a support agent is (the Support group, no superuser powers);
    # the operator's superuser is a second login.
    users = get_user_model().objects
    support, lead = users.get(username="support"), users.get(username="admin")
    assert support.is_staff and not support.is_superuser
    assert list(support.groups.values_list("name", flat=True)) == ["Support"]
    assert support.has_perm("billing.grant_credits") and not support.has_perm("billing.set_enforcement")
    assert lead.is_staff and lead.is_superuser
    assert support.check_password("support-demo-password") and lead.check_password("admin-demo-password")
    call_command("check_ledger", stdout=StringIO())
