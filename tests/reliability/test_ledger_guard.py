"""The ledger guard, the ways tests/billing/test_ledger_guard.py and test_admin.py do not already take.

Those pin the PostgreSQL trigger (ORM and raw UPDATE/DELETE inside a transaction) and the admin's
add, change and delete pages. Here: the admin changelist's bulk delete action, a raw UPDATE/DELETE in
autocommit on a connection of its own (no Django transaction around it), and the money columns of
the wallet that the admin must not offer for editing.
"""

from decimal import Decimal

import psycopg
import pytest
from django.db import connection
from django.urls import reverse

from billing import services
from billing.models import CreditHold, CreditTransaction, LLMCallEvent, ModelPrice, Wallet
from billing.reconcile import check_ledger
from tests.factories import UserFactory


@pytest.fixture
def ledger(db, admin_user):
    user = UserFactory()
    services.grant(user=user, amount="5", reason="Welcome", initiated_by=admin_user)
    services.charge(
        user=user,
        price=ModelPrice.objects.get_or_create(
            model="echo-1",
            defaults={"input_price_per_1k": Decimal("0.5"), "output_price_per_1k": Decimal("1.5")},
        )[0],
        provider="echo",
        input_tokens=10,
        output_tokens=5,
    )
    services.reserve(user=user, amount=Decimal("1"))
    return user


@pytest.mark.django_db
@pytest.mark.parametrize("model", [CreditTransaction, LLMCallEvent, CreditHold, Wallet])
def test_the_admin_bulk_delete_action_deletes_nothing_of_the_money(admin_client, ledger, model):
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    ids = [str(pk) for pk in model.objects.values_list("pk", flat=True)]
    before = model.objects.count()

    page = admin_client.get(changelist)
    response = admin_client.post(
        changelist, {"action": "delete_selected", "_selected_action": ids, "post": "yes"}
    )

    assert page.status_code == 200
    assert 'value="delete_selected"' not in page.text
    assert response.status_code in (200, 302)
    assert model.objects.count() == before
    assert check_ledger().ok


@pytest.mark.django_db
def test_the_wallet_admin_offers_no_field_that_moves_money(admin_client, ledger):
    wallet = Wallet.objects.get(user=ledger)
    page = admin_client.get(reverse("admin:billing_wallet_change", args=[wallet.pk]))

    assert page.status_code == 200
    for name in ("balance", "held"):
        assert f'name="{name}"' not in page.text
    admin_client.post(
        reverse("admin:billing_wallet_change", args=[wallet.pk]),
        {"balance": "1000000", "held": "0", "enforcement": "default"},
    )
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.held) != (Decimal("1000000"), Decimal("0"))
    assert check_ledger().ok


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE billing_credittransaction SET amount = amount * 1000",
        "UPDATE billing_credittransaction SET balance_after = 0, reason = 'edited'",
        "DELETE FROM billing_credittransaction",
    ],
)
def test_postgres_refuses_ledger_edits_in_autocommit_on_any_connection(ledger, sql):
    params = connection.settings_dict
    rows = list(
        CreditTransaction.objects.order_by("pk").values_list("pk", "amount", "balance_after", "reason")
    )
    with (
        psycopg.connect(
            dbname=params["NAME"],
            user=params["USER"],
            password=params.get("PASSWORD") or None,
            host=params.get("HOST") or "127.0.0.1",
            port=params.get("PORT") or 5432,
            autocommit=True,
        ) as raw,
        pytest.raises(psycopg.Error, match="append-only"),
    ):
        raw.execute(sql)

    assert (
        list(CreditTransaction.objects.order_by("pk").values_list("pk", "amount", "balance_after", "reason"))
        == rows
    )
