"""Spending caps: set by the user or by staff, counted from the calendar, alerted at 50, 80 and 100 percent once per period."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import services
from billing.exceptions import LimitReached
from billing.models import ModelPrice, SpendLimit, UsageDaily, WalletEvent
from billing.services import charging, holds, set_spend_cap
from tests.factories import UserFactory, fund, token_client_for
from tests.plans import assert_reads_at_most, execute_as_prepared, plan_as_kept

pytestmark = pytest.mark.django_db


@pytest.fixture
def price():
    return ModelPrice.objects.get(model="echo-1")


def charge_of(user, price, amount: Decimal):
    """A call that costs `amount` (output tokens at the output price), through a reserved hold."""
    tokens = int(amount * 1000 / price.output_price_per_1k)
    reservation = services.reserve(user=user, amount=amount)
    return services.charge(
        user=user, price=price, provider="echo", input_tokens=0, output_tokens=tokens, hold=reservation.hold
    )


def test_alerts_go_out_once_per_threshold_and_period(user, price):
    fund(user, "100")
    set_spend_cap(user=user, kind=SpendLimit.Kind.USER_CAP, amount=Decimal("1"), period="day")
    charge_of(user, price, Decimal("0.6"))
    charge_of(user, price, Decimal("0.3"))
    charge_of(user, price, Decimal("0.15"))
    alerts = list(
        WalletEvent.objects.filter(type="wallet.spend_cap_threshold").values_list("percent", flat=True)
    )
    assert sorted(alerts) == [50, 80, 100]
    with pytest.raises(LimitReached):
        raise services.reserve(user=user, amount=Decimal("0.1")).refusal()


def test_a_cap_counts_the_period_spent_before_it_was_set(user, price):
    fund(user, "100")
    charge_of(user, price, Decimal("0.6"))
    cap = set_spend_cap(user=user, kind=SpendLimit.Kind.STAFF_CAP, amount=Decimal("0.5"), period="month")
    assert cap.spent == Decimal("0.6")
    assert services.reserve(user=user, amount=Decimal("0.1")).refused


def test_a_past_periods_spending_counts_nothing(user, price):
    fund(user, "100")
    cap = set_spend_cap(user=user, kind=SpendLimit.Kind.USER_CAP, amount=Decimal("0.5"), period="day")
    charge_of(user, price, Decimal("0.6"))
    assert services.reserve(user=user, amount=Decimal("0.1")).refused
    # The calendar moves on: yesterday's counter counts nothing today, with no job run.
    SpendLimit.objects.filter(pk=cap.pk).update(period_start=timezone.localdate() - timedelta(days=1))
    assert not services.reserve(user=user, amount=Decimal("0.1")).refused


def test_the_user_sets_and_removes_their_cap_but_not_staffs(user):
    client = token_client_for(user)
    response = client.patch(
        "/api/v1/users/me/wallet", {"spend_cap": "5", "spend_cap_period": "week"}, format="json"
    )
    assert response.status_code == 200
    assert (
        response.json()["spend_cap"]["amount"] == "5.000000"
        and response.json()["spend_cap"]["period"] == "week"
    )
    set_spend_cap(user=user, kind=SpendLimit.Kind.STAFF_CAP, amount=Decimal("1"), period="day")
    body = client.get("/api/v1/users/me/wallet").json()
    assert body["staff_spend_cap"]["amount"] == "1.000000"
    response = client.patch("/api/v1/users/me/wallet", {"spend_cap": None}, format="json")
    assert "spend_cap" not in response.json() and response.json()["staff_spend_cap"]["amount"] == "1.000000"
    assert (
        client.patch(
            "/api/v1/users/me/wallet", {"spend_cap": "-1", "spend_cap_period": "day"}, format="json"
        ).status_code
        == 400
    )


def test_a_patch_changes_only_what_it_names(user):
    """PATCH semantics: a new cap without a period is monthly; a period alone moves the cap's period;
    the amount alone keeps it; an empty body changes nothing; a period without any cap is refused."""
    client = token_client_for(user)

    def patch(body):
        return client.patch("/api/v1/users/me/wallet", body, format="json")

    response = patch({"spend_cap_period": "day"})
    assert response.status_code == 400 and "spend_cap" in response.json()
    assert not SpendLimit.objects.filter(wallet__user=user).exists()  # nothing written
    assert patch({}).status_code == 200 and not SpendLimit.objects.filter(wallet__user=user).exists()

    cap = patch({"spend_cap": "5"}).json()["spend_cap"]
    assert (cap["amount"], cap["period"]) == ("5.000000", "month")
    cap = patch({"spend_cap_period": "week"}).json()["spend_cap"]
    assert (cap["amount"], cap["period"]) == ("5.000000", "week")
    cap = patch({"spend_cap": "7.5"}).json()["spend_cap"]
    assert (cap["amount"], cap["period"]) == ("7.500000", "week")
    cap = patch({}).json()["spend_cap"]
    assert (cap["amount"], cap["period"]) == ("7.500000", "week")
    response = patch({"spend_cap": "1000000000.000001"})
    assert response.status_code == 400 and "spend_cap" in response.json()
    assert SpendLimit.objects.get(wallet__user=user, kind=SpendLimit.Kind.USER_CAP).amount == Decimal("7.5")


def test_staff_set_a_cap_through_the_staff_api(user, staff_user):
    response = token_client_for(staff_user).post(
        f"/api/v1/admin/wallets/{user.pk}/spend-cap",
        {"spend_cap": "2", "spend_cap_period": "month"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["staff_spend_cap"]["amount"] == "2.000000"
    assert (
        token_client_for(user)
        .post(f"/api/v1/admin/wallets/{user.pk}/spend-cap", {"spend_cap": None}, format="json")
        .status_code
        == 403
    )


def test_a_call_reads_its_wallets_caps_and_its_own_key_not_every_key(user, price, monkeypatch):
    """A user with hundreds of keys (revoked ones too: their limit rows stay) pays for a call what a
    user with one pays: the reservation and the charge read the wallet's caps and the call's key
    limit, however many key limits the wallet has, with the plan a pooled connection keeps."""
    fund(user, "100")
    set_spend_cap(user=user, kind=SpendLimit.Kind.USER_CAP, amount=Decimal("50"), period="day")
    key = services.open_key_limit(user=user, amount=Decimal("10"), period=None)
    for _ in range(400):  # the other keys this user opened over time
        services.open_key_limit(user=user, amount=None, period=None)
    for other in UserFactory.create_batch(100):  # most users have one key
        services.open_key_limit(user=other, amount=None, period=None)
    sent = plan_as_kept(monkeypatch, charging, holds, analyze="billing_spendlimit")
    reservation = services.reserve(user=user, amount=Decimal("0.1"), spend_limit_id=key.pk)
    services.charge(
        user=user, price=price, provider="echo", input_tokens=1, output_tokens=1, hold=reservation.hold
    )

    assert len(sent) == 2, list(sent)
    for sql, params in sent.items():
        assert_reads_at_most("billing_spendlimit", execute_as_prepared(sql, params), 2)


def test_a_call_charged_after_its_period_ended_counts_in_that_period_not_the_current_one(user, price):
    """A stream's hold charged after midnight (release_expired_holds) is filed under the day it was
    made, in the reports and in the limits alike: today's counters, and their alerts, are not charged
    for yesterday's call."""
    fund(user, "100")
    cap = set_spend_cap(user=user, kind=SpendLimit.Kind.USER_CAP, amount=Decimal("1"), period="day")
    key = services.open_key_limit(user=user, amount=Decimal("1"), period="day")
    charge_of(user, price, Decimal("0.2"))
    yesterday = timezone.now() - timedelta(days=1)
    hold = services.reserve(user=user, amount=Decimal("0.9"), spend_limit_id=key.pk).hold
    late = services.charge(
        user=user,
        price=price,
        provider="echo",
        input_tokens=0,
        output_tokens=int(Decimal("0.9") * 1000 / price.output_price_per_1k),
        hold=hold,
        occurred_at=yesterday,
    )

    assert late.event.cost == Decimal("0.9")
    cap.refresh_from_db()
    key.refresh_from_db()
    assert (cap.spent, cap.period_start) == (Decimal("0.2"), timezone.localdate())
    assert (key.spent, key.held) == (Decimal(0), Decimal(0))
    assert not WalletEvent.objects.filter(type="wallet.spend_cap_threshold").exists()
    assert UsageDaily.objects.get(user_id=user.pk, day=timezone.localdate(yesterday)).cost == Decimal("0.9")
