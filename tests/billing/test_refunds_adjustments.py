"""Refunds and adjustments: new ledger rows, bounded by their debit, idempotent, on every surface."""

from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing import services
from billing.exceptions import IdempotencyConflict, InitiatorNotStaff, InvalidAmount, InvalidRefund
from billing.models import CreditTransaction, ModelPrice, Wallet
from billing.reconcile import check_ledger
from core.money import format_money
from tests.billing.test_concurrency import run_in_threads
from tests.factories import ModelPriceFactory, StaffUserFactory, UserFactory, beyond_the_support_limit

pytestmark = pytest.mark.django_db


def make_debit(user, *, tokens: int = 1000) -> CreditTransaction:
    """A debit of 2.000000 (1000 in + 1000 out at 1 credit per 1k each way)."""
    price = ModelPrice.objects.filter(model="flat-1").first() or ModelPriceFactory(
        model="flat-1", input_price_per_1k=Decimal(1), output_price_per_1k=Decimal(1)
    )
    charged = services.charge(
        user=user, price=price, provider="echo", input_tokens=tokens, output_tokens=tokens
    )
    return CreditTransaction.objects.get(pk=charged.transaction.pk)


def balance(user) -> Decimal:
    return Wallet.objects.get(user=user).balance


def refund_url(pk, slash=""):
    return f"/api/v1/admin/transactions/{pk}/refund{slash}"


def adjust_url(user_id, slash=""):
    return f"/api/v1/admin/wallets/{user_id}/adjust{slash}"


# --- the refund service ----------------------------------------------------------------------


def test_refund_defaults_to_all_that_is_left_and_points_at_its_debit(user, staff_user):
    debit = make_debit(user)
    row = services.refund(debit=debit, amount=None, reason="Outage", initiated_by=staff_user)

    assert (row.kind, row.amount, row.refund_of_id, row.initiated_by, row.replayed) == (
        "refund",
        Decimal("2"),
        debit.pk,
        staff_user,
        False,
    )
    assert balance(user) == Decimal(0) == row.balance_after
    assert check_ledger().ok


def test_partial_refunds_add_up_to_the_debit_and_no_further(user, staff_user):
    debit = make_debit(user)
    services.refund(debit=debit, amount="0.5", reason="Cut off", initiated_by=staff_user)
    assert services.refundable(debit=debit) == Decimal("1.5")
    with pytest.raises(InvalidAmount, match="at most 1.500000"):
        services.refund(debit=debit, amount="1.500001", reason="Too much", initiated_by=staff_user)
    last = services.refund(debit=debit, amount=None, reason="The rest", initiated_by=staff_user)
    assert last.amount == Decimal("1.5")
    with pytest.raises(InvalidRefund, match="already fully refunded"):
        services.refund(debit=debit, amount=None, reason="Again", initiated_by=staff_user)
    assert CreditTransaction.objects.filter(kind="refund").count() == 2


@pytest.mark.parametrize("kind", ["grant", "refund", "adjustment"])
def test_only_a_debit_can_be_refunded(user, staff_user, kind):
    rows = {
        "grant": lambda: services.grant(user=user, amount="5", reason="g", initiated_by=staff_user),
        "refund": lambda: services.refund(
            debit=make_debit(user), amount="1", reason="r", initiated_by=staff_user
        ),
        "adjustment": lambda: services.adjust(user=user, amount="-1", reason="a", initiated_by=staff_user),
    }
    row = rows[kind]()
    with pytest.raises(InvalidRefund, match="Only a debit can be refunded"):
        services.refund(debit=row, amount=None, reason="no", initiated_by=staff_user)


@pytest.mark.parametrize("amount", ["0", "-1", "1e1", "abc", "0.0000001", True])
def test_refund_refuses_bad_amounts(user, staff_user, amount):
    with pytest.raises(InvalidAmount):
        services.refund(debit=make_debit(user), amount=amount, reason="x", initiated_by=staff_user)


def test_refund_needs_an_active_staff_initiator_and_a_reason(user):
    debit = make_debit(user)
    with pytest.raises(InitiatorNotStaff):
        services.refund(debit=debit, amount=None, reason="x", initiated_by=UserFactory())
    with pytest.raises(Exception, match="reason is required"):
        services.refund(debit=debit, amount=None, reason="  ", initiated_by=StaffUserFactory())


def test_refund_idempotency_key_replays_and_conflicts(user, staff_user):
    debit = make_debit(user)
    first = services.refund(debit=debit, amount="1", reason="r", initiated_by=staff_user, idempotency_key="k")
    again = services.refund(debit=debit, amount="1", reason="r", initiated_by=staff_user, idempotency_key="k")
    assert (again.pk, again.replayed) == (first.pk, True)
    with pytest.raises(IdempotencyConflict):
        services.refund(debit=debit, amount="0.5", reason="r", initiated_by=staff_user, idempotency_key="k")
    # One key space per wallet: a grant with a refund's key is a conflict too.
    with pytest.raises(IdempotencyConflict):
        services.grant(user=user, amount="1", reason="r", initiated_by=staff_user, idempotency_key="k")
    assert CreditTransaction.objects.filter(kind="refund").count() == 1


def test_a_full_refund_replayed_without_amount_answers_the_first_row(user, staff_user):
    debit = make_debit(user)
    first = services.refund(
        debit=debit, amount=None, reason="r", initiated_by=staff_user, idempotency_key="k"
    )
    again = services.refund(
        debit=debit, amount=None, reason="r", initiated_by=staff_user, idempotency_key="k"
    )
    assert again.pk == first.pk and again.replayed


def test_the_database_ties_refund_of_to_the_refund_kind(user, staff_user):
    debit = make_debit(user)
    wallet = Wallet.objects.get(user=user)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditTransaction.objects.create(wallet=wallet, kind="refund", amount=1, balance_after=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditTransaction.objects.create(
            wallet=wallet, kind="grant", amount=1, balance_after=0, refund_of=debit
        )


def test_a_refunded_debit_cannot_be_deleted_around_python(user, staff_user):
    debit = make_debit(user)
    services.refund(debit=debit, amount=None, reason="r", initiated_by=staff_user)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM billing_credittransaction WHERE id = %s", [debit.pk])


def test_check_ledger_names_refunds_beyond_their_debit(user, staff_user):
    debit = make_debit(user)
    services.refund(debit=debit, amount=None, reason="r", initiated_by=staff_user)
    # Going around the service (no lock, no check): the reconciliation must notice.
    services.ledger.append(user_id=user.pk, kind="refund", amount=Decimal(1), reason="x", refund_of=debit)
    result = check_ledger()
    assert not result.ok
    assert any(f"refunds of debit {debit.pk} add up to 3.000000" in d.problem for d in result.discrepancies)


# --- the adjustment service ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "expected"), [("-3.5", Decimal("-3.5")), ("10000", Decimal(10000)), (-1, -1)]
)
def test_adjust_moves_the_wallet_by_a_signed_amount(user, staff_user, amount, expected):
    beyond_the_support_limit(staff_user)  # the edge is the service's maximum, not SUPPORT_GRANT_LIMIT
    row = services.adjust(user=user, amount=amount, reason="Fix", initiated_by=staff_user)
    assert (row.kind, row.amount, row.initiated_by, row.refund_of_id) == (
        "adjustment",
        expected,
        staff_user,
        None,
    )
    assert balance(user) == expected
    assert check_ledger().ok


@pytest.mark.parametrize("amount", ["0", "-0.000000", "10000.000001", "-10000.5", "+1", "1e2", "NaN", "--1"])
def test_adjust_refuses_zero_out_of_range_and_malformed_amounts(user, staff_user, amount):
    with pytest.raises(InvalidAmount):
        services.adjust(user=user, amount=amount, reason="Fix", initiated_by=staff_user)
    assert not CreditTransaction.objects.exists()


def test_adjust_is_idempotent_per_key(user, staff_user):
    first = services.adjust(
        user=user, amount="-2", reason="Fix", initiated_by=staff_user, idempotency_key="a"
    )
    again = services.adjust(
        user=user, amount="-2", reason="Fix", initiated_by=staff_user, idempotency_key="a"
    )
    assert again.pk == first.pk and again.replayed
    with pytest.raises(IdempotencyConflict):
        services.adjust(user=user, amount="2", reason="Fix", initiated_by=staff_user, idempotency_key="a")


# --- the API ---------------------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_refund_api_answers_the_row_with_refund_of_and_the_balance(staff_client, staff_user, user, slash):
    debit = make_debit(user)
    response = staff_client.post(
        refund_url(debit.pk, slash), {"amount": "0.5", "reason": "Cut off"}, format="json"
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["balance"] == "-1.500000"
    item = body["transaction"]
    assert (item["kind"], item["amount"], item["refund_of"], item["initiated_by"]["id"]) == (
        "refund",
        "0.500000",
        debit.pk,
        staff_user.pk,
    )
    assert "Idempotent-Replayed" not in response.headers


def test_refund_api_replays_with_the_header_and_refuses_a_different_body(staff_client, user):
    debit = make_debit(user)
    url, headers = refund_url(debit.pk), {"Idempotency-Key": "r-1"}
    first = staff_client.post(url, {"reason": "Outage"}, format="json", headers=headers)
    again = staff_client.post(url, {"reason": "Outage"}, format="json", headers=headers)
    other = staff_client.post(url, {"reason": "Another"}, format="json", headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"


def test_refund_api_errors(staff_client, staff_user, user):
    debit = make_debit(user)
    grant = services.grant(user=user, amount="1", reason="g", initiated_by=staff_user)
    too_much = staff_client.post(refund_url(debit.pk), {"amount": "3", "reason": "x"}, format="json")
    assert too_much.status_code == 400 and "amount" in too_much.json()
    not_debit = staff_client.post(refund_url(grant.pk), {"reason": "x"}, format="json")
    assert not_debit.status_code == 400 and not_debit.json()["code"] == "invalid_refund"
    no_reason = staff_client.post(refund_url(debit.pk), {}, format="json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()
    assert staff_client.post(refund_url(999999), {"reason": "x"}, format="json").status_code == 404
    bad_key = staff_client.post(
        refund_url(debit.pk), {"reason": "x"}, format="json", headers={"Idempotency-Key": ""}
    )
    assert bad_key.status_code == 400
    assert not CreditTransaction.objects.filter(kind="refund").exists()


def test_refund_and_adjust_are_staff_only(user_client, api_client, user):
    debit = make_debit(user)
    assert user_client.post(refund_url(debit.pk), {"reason": "x"}, format="json").status_code == 403
    assert (
        api_client.post(adjust_url(user.pk), {"amount": "1", "reason": "x"}, format="json").status_code == 401
    )


@pytest.mark.parametrize("slash", ["", "/"])
def test_adjust_api(staff_client, staff_user, user, slash):
    response = staff_client.post(
        adjust_url(user.pk, slash), {"amount": "-2.25", "reason": "Duplicate grant"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["balance"] == "-2.250000"
    assert response.json()["transaction"]["kind"] == "adjustment"
    assert response.json()["transaction"]["refund_of"] is None
    zero = staff_client.post(adjust_url(user.pk), {"amount": "0", "reason": "x"}, format="json")
    assert zero.status_code == 400 and "amount" in zero.json()
    assert (
        staff_client.post(adjust_url(999999), {"amount": "1", "reason": "x"}, format="json").status_code
        == 404
    )


def test_new_kinds_show_in_the_users_ledger_and_the_staff_wallet(user_client, staff_client, staff_user, user):
    debit = make_debit(user)
    services.refund(debit=debit, amount=None, reason="r", initiated_by=staff_user)
    services.adjust(user=user, amount="1", reason="a", initiated_by=staff_user)

    refunds = user_client.get("/api/v1/users/me/transactions", {"kind": "refund"}).json()["results"]
    assert [(r["kind"], r["refund_of"]) for r in refunds] == [("refund", debit.pk)]
    adjustments = user_client.get("/api/v1/users/me/transactions", {"kind": "adjustment"}).json()["results"]
    assert [r["amount"] for r in adjustments] == ["1.000000"]
    wallet = staff_client.get(f"/api/v1/admin/wallets/{user.pk}").json()
    assert [t["kind"] for t in wallet["transactions"]] == ["adjustment", "refund", "debit"]


def test_the_csv_export_has_a_refund_of_column(staff_client, staff_user, user):
    import csv
    import io

    debit = make_debit(user)
    refund = services.refund(debit=debit, amount=None, reason="r", initiated_by=staff_user)
    response = staff_client.get("/api/v1/admin/transactions/export.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    by_id = {row["id"]: row for row in rows}
    assert by_id[str(refund.pk)]["refund_of"] == str(debit.pk)
    assert by_id[str(debit.pk)]["refund_of"] == ""


# --- commands --------------------------------------------------------------------------------


def run(name, *args) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()


def test_refund_credits_command(user):
    StaffUserFactory(username="ops")
    debit = make_debit(user)
    out = run(
        "refund_credits", str(debit.pk), "--amount", "0.5", "--reason", "Cut off", "--initiated-by", "ops"
    )
    assert "Refunded 0.500000 credits" in out and "Balance after it: -1.500000" in out
    out = run(
        "refund_credits", str(debit.pk), "--reason", "rest", "--initiated-by", "ops", "--idempotency-key", "c"
    )
    assert "Refunded 1.500000" in out
    again = run(
        "refund_credits", str(debit.pk), "--reason", "rest", "--initiated-by", "ops", "--idempotency-key", "c"
    )
    assert "Already refunded" in again
    with pytest.raises(CommandError, match="already fully refunded"):
        run("refund_credits", str(debit.pk), "--reason", "more", "--initiated-by", "ops")
    with pytest.raises(CommandError, match="No ledger transaction"):
        run("refund_credits", "999999", "--reason", "x", "--initiated-by", "ops")
    arabic = "".join("٠١٢٣٤٥٦٧٨٩"[int(digit)] for digit in str(debit.pk))  # ids are ASCII digits only
    for reference in (arabic, "9" * 30):
        with pytest.raises(CommandError, match="No ledger transaction"):
            run("refund_credits", reference, "--reason", "x", "--initiated-by", "ops")
    UserFactory(username="nobody")
    with pytest.raises(CommandError, match="not an active staff user"):
        run("refund_credits", str(debit.pk), "--reason", "x", "--initiated-by", "nobody")
    assert check_ledger().ok


def test_adjust_credits_command_resolves_the_user_like_grant_credits(user):
    StaffUserFactory(username="ops")
    out = run("adjust_credits", user.email, "-3.5", "--reason", "Fix", "--initiated-by", "ops")
    assert "by -3.500000" in out and "Balance after it: -3.500000" in out
    run("adjust_credits", str(user.pk), "1", "--reason", "Fix", "--initiated-by", "ops")
    assert balance(user) == Decimal("-2.5")
    with pytest.raises(CommandError, match="amount: An adjustment cannot be 0"):
        run("adjust_credits", user.username, "0", "--reason", "Fix", "--initiated-by", "ops")
    with pytest.raises(CommandError, match="No user matches"):
        run("adjust_credits", "ghost", "1", "--reason", "Fix", "--initiated-by", "ops")


# --- the admin -------------------------------------------------------------------------------


def test_the_refund_form_reads_what_is_left_of_many_debits_in_a_fixed_number_of_queries(
    admin_client, user, staff_user
):
    url = reverse("admin:billing_credittransaction_changelist")
    debits = [make_debit(user, tokens=100) for _ in range(12)]
    services.refund(debit=debits[0], amount=Decimal("0.01"), reason="part", initiated_by=staff_user)

    def form_for(selected) -> int:
        with CaptureQueriesContext(connection) as queries:
            page = admin_client.post(url, {"action": "refund", "_selected_action": [d.pk for d in selected]})
        assert page.status_code == 200
        return len(queries)

    few, many = form_for(debits[:2]), form_for(debits)
    assert many == few
    body = admin_client.post(url, {"action": "refund", "_selected_action": [debits[0].pk]}).content.decode()
    assert format_money(-debits[0].amount - Decimal("0.01")) in body  # what is left, after the refund


def test_admin_refund_action_shows_the_form_then_refunds_and_logs(admin_client, admin_user, user):
    debit = make_debit(user)
    url = reverse("admin:billing_credittransaction_changelist")
    page = admin_client.post(url, {"action": "refund", "_selected_action": [debit.pk]})
    assert page.status_code == 200
    assert b'name="amount"' in page.content and b'name="reason"' in page.content
    submission = page.context["form"]["submission"].value()
    body = {"action": "refund", "_selected_action": [debit.pk], "apply": "yes", "submission": submission}

    bad = admin_client.post(url, {**body, "amount": "5", "reason": "Too much"})
    assert bad.status_code == 200 and b"left to refund" in bad.content
    done = admin_client.post(url, {**body, "amount": "0.5", "reason": "Cut off"})
    assert done.status_code == 302
    again = admin_client.post(url, {**body, "amount": "0.5", "reason": "Cut off"})  # double submit
    assert again.status_code == 302

    refund = CreditTransaction.objects.get(kind="refund")
    assert (refund.amount, refund.refund_of_id, refund.initiated_by) == (Decimal("0.5"), debit.pk, admin_user)
    entry = LogEntry.objects.get(object_id=str(debit.pk))
    assert "Refunded 0.500000" in entry.get_change_message()
    assert check_ledger().ok


def test_admin_refund_action_refuses_rows_that_are_not_debits(admin_client, admin_user, user):
    grant = services.grant(user=user, amount="1", reason="g", initiated_by=admin_user)
    url = reverse("admin:billing_credittransaction_changelist")
    response = admin_client.post(url, {"action": "refund", "_selected_action": [grant.pk]}, follow=True)
    assert b"Only debits can be refunded" in response.content
    assert not CreditTransaction.objects.filter(kind="refund").exists()


def test_admin_adjust_action_shows_the_form_then_adjusts_and_logs(admin_client, admin_user, user):
    wallet = Wallet.objects.get(user=user)
    url = reverse("admin:billing_wallet_changelist")
    page = admin_client.post(url, {"action": "adjust_credits", "_selected_action": [wallet.pk]})
    assert page.status_code == 200 and b'name="amount"' in page.content
    submission = page.context["form"]["submission"].value()
    body = {
        "action": "adjust_credits",
        "_selected_action": [wallet.pk],
        "apply": "yes",
        "submission": submission,
    }
    assert admin_client.post(url, {**body, "amount": "0", "reason": "x"}).status_code == 200
    assert admin_client.post(url, {**body, "amount": "-4", "reason": "Fix"}).status_code == 302

    row = CreditTransaction.objects.get(kind="adjustment")
    assert (row.amount, row.initiated_by) == (Decimal(-4), admin_user)
    assert "Adjusted by -4.000000" in LogEntry.objects.get(object_id=str(wallet.pk)).get_change_message()


def test_admin_ledger_pages_show_the_new_kinds(admin_client, admin_user, user):
    debit = make_debit(user)
    services.refund(debit=debit, amount=None, reason="r", initiated_by=admin_user)
    services.adjust(user=user, amount="1", reason="a", initiated_by=admin_user)
    url = reverse("admin:billing_credittransaction_changelist")
    for kind in ("refund", "adjustment"):
        assert admin_client.get(url, {"kind": kind}).status_code == 200
    wallet = Wallet.objects.get(user=user)
    assert admin_client.get(reverse("admin:billing_wallet_change", args=[wallet.pk])).status_code == 200


# --- concurrency -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_partial_refunds_never_exceed_the_debit():
    user, staff = UserFactory(), StaffUserFactory()
    debit = make_debit(user)  # 2.000000

    # 20 refunds of 0.3 would be 6.0; only 6 fit (1.8), the 7th would pass 2.0.
    def attempt():
        try:
            return services.refund(debit=debit, amount="0.3", reason="race", initiated_by=staff).pk
        except InvalidAmount:
            return None

    results = run_in_threads(20, [attempt] * 20)

    assert sum(1 for r in results if r) == 6
    refunds = CreditTransaction.objects.filter(refund_of=debit)
    assert sum(r.amount for r in refunds) == Decimal("1.8")
    assert balance(user) == Decimal("-0.2")
    result = check_ledger()
    assert result.ok, result.discrepancies
