"""Credit lots and purchases on the pages people see: the user's wallet page and the console's customer page."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from billing import services, stripe_checkout
from billing.models import ModelPrice, Purchase
from billing.services.purchases import complete_checkout
from tests.factories import StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def grant(user, amount, **terms):
    staff = StaffUserFactory()
    return services.grant(user=user, amount=amount, reason="test grant", initiated_by=staff, **terms)


def overspend(user, times=1):
    """Charges with enforcement off and nothing to burn: what they cost becomes the wallet's debt."""
    price = ModelPrice.objects.get(model="echo-1")
    for _ in range(times):
        services.charge(user=user, price=price, provider="echo", input_tokens=1000, output_tokens=1000)


def purchase(user, credits, *, session_id, paid=False) -> Purchase:
    """A purchase as the Buy credits flow leaves it (pending with its session), paid through the webhook's service."""
    bought = Purchase.objects.create(
        user=user,
        credits=credits,
        amount=Decimal(credits) / 100,
        currency="usd",
        stripe_session_id=session_id,
    )
    if paid:
        session = {
            "id": session_id,
            "payment_status": "paid",
            "amount_total": stripe_checkout.minor_units(bought.amount, "usd"),
            "currency": "usd",
        }
        assert complete_checkout(session=session) == "credited"
        bought.refresh_from_db()
    return bought


# --- The user's wallet page ------------------------------------------------------------------------


def test_wallet_lists_live_lots_in_burn_order_with_expiries_and_the_next_expiry(user):
    soon = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    never = grant(user, "7")  # promotional, never expires: burns last at equal priority
    expiring = grant(user, "5", expires_at=soon)
    first = grant(user, "2", priority=10, category="paid")
    response = signed_in(user).get("/")
    page = response.context["lots"]
    assert [lot.transaction_id for lot in page.lots] == [first.pk, expiring.pk, never.pk]
    assert (page.next_expiry.at, page.next_expiry.amount, page.more) == (soon, Decimal("5"), 0)
    body = response.content.decode()
    assert 'id="lot-list"' in body and '<th scope="col">Expires</th>' in body
    assert "5.000000</strong> credits expire on" in body
    assert soon.strftime("%Y-%m-%d %H:%M") in body and ">never<" in body
    assert "Hook:" not in body
    assert 'id="debt"' not in body


def test_wallet_shows_the_debt_the_next_credits_pay_first(user, settings):
    settings.CREDIT_ENFORCEMENT_ENABLED = False
    overspend(user)
    response = signed_in(user).get("/")
    debt = response.context["state"].debt
    assert debt > 0 and response.context["lots"].lots == []
    body = response.content.decode()
    assert f'You owe <strong class="money">{debt}</strong> credits' in body
    assert "No credits left to spend." in body


def test_wallet_shows_the_first_lots_and_counts_the_rest(user):
    for i in range(23):
        grant(user, "1", priority=i)
    response = signed_in(user).get("/")
    page = response.context["lots"]
    assert [lot.priority for lot in page.lots] == list(range(20))
    assert page.more == 3
    assert "and 3 more, spent after these." in response.content.decode()


def test_the_next_expiry_counts_a_lot_burned_after_those_shown(user):
    """A lot far down the burn order (a high priority number) can still expire first."""
    for _ in range(21):
        grant(user, "1", priority=0)
    late = timezone.now() + timedelta(hours=5)
    grant(user, "4", priority=90, expires_at=late)
    page = signed_in(user).get("/").context["lots"]
    assert len(page.lots) == 20 and page.more == 2
    assert page.next_expiry.amount == Decimal("4")


def test_wallet_never_shows_another_users_lots(user):
    other = UserFactory()
    grant(other, "9", expires_at=timezone.now() + timedelta(days=1))
    grant(user, "3")
    response = signed_in(user).get("/")
    assert [lot.amount for lot in response.context["lots"].lots] == [Decimal("3")]
    assert response.context["lots"].next_expiry is None
    assert "9.000000" not in response.content.decode()


def test_spent_and_expired_lots_are_not_live(user, settings):
    settings.CREDIT_ENFORCEMENT_ENABLED = False
    grant(user, "0.001")
    overspend(user)  # burns the small lot, the rest becomes debt
    grant(user, "100")  # pays the debt first
    page = signed_in(user).get("/").context["lots"]
    [lot] = page.lots
    assert lot.amount == Decimal("100") and lot.remaining < lot.amount


# --- The console's customer page -------------------------------------------------------------------


@pytest.fixture
def boss():
    return signed_in(StaffUserFactory(is_superuser=True))


def customer_page(client, customer):
    response = client.get(f"/admin/web/customer/{customer.pk}/change/")
    assert response.status_code == 200
    return response


def section(response, section_id):
    return next(s for s in response.context["sections"] if s.id == section_id)


def test_customer_page_lists_lots_in_burn_order_with_the_next_expiry_and_a_link_to_every_lot(boss, user):
    soon = timezone.now() + timedelta(days=2)
    later = grant(user, "6")
    first = grant(user, "4", expires_at=soon)
    grant(UserFactory(), "8", expires_at=soon)  # not hers
    response = customer_page(boss, user)
    lots = section(response, "lots").context["lots"]
    assert [lot.transaction_id for lot in lots.lots] == [first.pk, later.pk]
    assert lots.next_expiry.amount == Decimal("4")
    body = response.content.decode()
    assert 'id="customer-lots"' in body and "8.000000" not in body
    assert f'/admin/billing/creditlot/?wallet={user.wallet.pk}"' in body
    assert f"/admin/billing/credittransaction/{first.pk}/change/" in body
    assert 'id="lots-debt">none<' in body
    # The link opens the lot list filtered to her wallet.
    listed = boss.get(f"/admin/billing/creditlot/?wallet={user.wallet.pk}")
    assert listed.status_code == 200
    assert {lot.wallet_id for lot in listed.context["cl"].result_list} == {user.wallet.pk}


def test_customer_page_shows_the_debt(boss, user, settings):
    settings.CREDIT_ENFORCEMENT_ENABLED = False
    overspend(user)
    response = customer_page(boss, user)
    debt = section(response, "lots").context["state"].debt
    assert debt > 0
    assert f"<strong>{debt}</strong>: charged beyond the live lots" in response.content.decode()


def test_customer_page_lists_the_newest_purchases_with_their_sessions_and_pages(boss, user):
    paid = purchase(user, 500, session_id="cs_test_paid", paid=True)
    pending = purchase(user, 50, session_id="cs_test_pending")
    purchase(UserFactory(), 70, session_id="cs_test_not_hers")
    response = customer_page(boss, user)
    assert [p.pk for p in section(response, "purchases").context["purchases"]] == [pending.pk, paid.pk]
    body = response.content.decode()
    for bought in (paid, pending):
        assert f"/admin/billing/purchase/{bought.pk}/change/" in body and bought.stripe_session_id in body
    assert f"/admin/billing/credittransaction/{paid.transaction_id}/change/" in body
    assert "cs_test_not_hers" not in body
    # The paid purchase is a paid lot in the lots section.
    [lot] = section(response, "lots").context["lots"].lots
    assert (lot.source, lot.category, lot.transaction_id) == ("purchase", "paid", paid.transaction_id)


def test_customer_page_purchases_are_bounded_to_the_newest(boss, user):
    for i in range(12):
        purchase(user, 10 + i, session_id=f"cs_test_{i}")
    shown = section(customer_page(boss, user), "purchases").context["purchases"]
    assert [p.credits for p in shown] == list(range(21, 11, -1))


def test_purchases_and_the_lot_list_link_need_their_view_permissions(user):
    purchase(user, 500, session_id="cs_test_hidden")
    plain = StaffUserFactory()
    plain.user_permissions.add(*_perms("web.view_customer"))
    response = customer_page(signed_in(plain), user)
    ids = [s.id for s in response.context["sections"]]
    assert "lots" in ids and "purchases" not in ids
    body = response.content.decode()
    assert "cs_test_hidden" not in body and "/admin/billing/creditlot/" not in body


def _perms(*names):
    from django.contrib.auth.models import Permission

    return [
        Permission.objects.get(content_type__app_label=n.split(".")[0], codename=n.split(".")[1])
        for n in names
    ]
