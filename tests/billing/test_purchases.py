"""Buying credits: POST/GET users/me/purchases against the Stripe double, and the signed webhook crediting once."""

import logging
import re
from decimal import Decimal
from unittest import mock

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from billing import stripe_checkout
from billing.models import CreditTransaction, Purchase, Wallet
from billing.reconcile import check_ledger
from billing.services.purchases import reference
from tests.factories import UserFactory, client_for
from tests.live_server import free_port
from tests.stripe_fixtures import (
    WEBHOOK_SECRET,
    deliver,
    ledger_purchase_rows,
    paid,
    post_webhook,
    signed_event,
    stale_timestamp,
    table_counts,
)

pytestmark = pytest.mark.django_db

PURCHASES = "/api/v1/users/me/purchases"
BODY = {
    "credits": 500,
    "success_url": "https://app.example.com/buy/?session_id={CHECKOUT_SESSION_ID}",
    "cancel_url": "https://app.example.com/buy/",
}


def buy(client, **changes):
    return client.post(PURCHASES, {**BODY, **changes}, format="json")


def started(client, double, **changes) -> tuple[dict, dict]:
    """A purchase started through the API: (its 201 body, the double's session)."""
    response = buy(client, **changes)
    assert response.status_code == 201, response.content
    body = response.json()
    return body, double.sessions[body["stripe_session_id"]]


def assert_ledger_clean():
    result = check_ledger()
    assert result.ok, result.discrepancies


# --- starting a purchase --------------------------------------------------------------------------


def test_purchase_creates_a_checkout_session_and_answers_its_page(user, user_client, stripe_double):
    response = buy(user_client)

    assert response.status_code == 201
    body = response.json()
    assert body["credits"] == 500
    assert body["amount"] == "5.000000"  # 500 x 0.01
    assert body["currency"] == "usd"
    assert body["status"] == "pending"
    session = stripe_double.sessions[body["stripe_session_id"]]
    assert body["checkout_url"] == session["url"]
    assert session["mode"] == "payment"
    assert session["amount_total"] == 500  # cents
    assert session["currency"] == "usd"
    assert session["client_reference_id"] == reference(body["id"])
    assert re.fullmatch(rf"purchase-{body['id']}-[0-9a-f]{{16}}", session["client_reference_id"])
    assert session["metadata"] == {
        "reference": session["client_reference_id"],
        "purchase_id": str(body["id"]),
        "user_id": str(user.pk),
        "credits": "500",
    }
    assert session["success_url"] == BODY["success_url"]
    purchase = Purchase.objects.get(pk=body["id"])
    assert (purchase.user, purchase.status, purchase.stripe_session_id) == (user, "pending", session["id"])
    assert ledger_purchase_rows(user) == []  # nothing is credited before Stripe says it is paid


def test_purchase_price_follows_the_settings(user_client, stripe_double, settings):
    settings.CREDIT_UNIT_PRICE = Decimal("0.25")
    settings.CREDIT_CURRENCY = "eur"

    body, session = started(user_client, stripe_double, credits=7)

    assert (body["amount"], body["currency"]) == ("1.750000", "eur")
    assert (session["amount_total"], session["currency"]) == (175, "eur")


@pytest.mark.parametrize(
    ("currency", "unit_price", "credits", "amount", "amount_total"),
    [
        ("jpy", "1.5", 7, "11.000000", 11),  # zero-decimal: whole yen (10.5 rounds half up)
        ("kwd", "0.0125", 99, "1.240000", 1240),  # three-decimal: fils, ending in 0 (1.2375 -> 1.24)
        ("bhd", "0.001", 5, "0.010000", 10),
        ("isk", "1.25", 9, "11.000000", 1100),  # two-decimal in the API, charged in whole krónur
        ("usd", "0.013", 9, "0.120000", 12),  # 0.117 -> 0.12
    ],
)
def test_purchase_amounts_are_in_each_currencys_minor_unit_as_stripe_counts_it(
    user, user_client, stripe_double, settings, currency, unit_price, credits, amount, amount_total
):
    settings.CREDIT_CURRENCY, settings.CREDIT_UNIT_PRICE = currency, Decimal(unit_price)
    settings.PURCHASE_MIN_CREDITS = 1

    body, session = started(user_client, stripe_double, credits=credits)

    assert (body["amount"], session["amount_total"], session["currency"]) == (amount, amount_total, currency)
    # Paid in full at Stripe's figure: credited. A tenth of it (the amount read as cents) is not.
    short = {**paid(session), "amount_total": amount_total // 10}
    assert deliver(APIClient(), "checkout.session.completed", short).json()["outcome"] == "amount_mismatch"
    assert deliver(APIClient(), "checkout.session.completed", paid(session)).json()["outcome"] == "credited"
    assert Wallet.objects.get(user=user).balance == credits
    assert_ledger_clean()


@pytest.mark.parametrize("credits", [5, 10000, "42", "42.000"])
def test_purchase_takes_whole_credits_within_the_bounds(user_client, stripe_double, credits):
    assert buy(user_client, credits=credits).status_code == 201


@pytest.mark.parametrize(
    "credits",
    [4, 10001, 0, -5, "5.5", 12.5, "1e3", "abc", "", None, True, [5], {"n": 5}, "１０", "NaN"],
)
def test_purchase_refuses_credits_out_of_bounds_or_not_whole(user_client, stripe_double, credits):
    before = table_counts()

    response = buy(user_client, credits=credits)

    assert response.status_code == 400
    assert list(response.json()) == ["credits"]
    assert (
        "whole number" in response.json()["credits"][0]
        or "between 5 and 10000" in response.json()["credits"][0]
    )
    assert table_counts() == before
    assert stripe_double.sessions == {}


def test_purchase_bounds_are_settings(user_client, stripe_double, settings):
    settings.PURCHASE_MIN_CREDITS, settings.PURCHASE_MAX_CREDITS = 100, 200

    assert buy(user_client, credits=99).json() == {
        "credits": ["Ensure this value is between 100 and 200 credits."]
    }
    assert buy(user_client, credits=201).status_code == 400
    assert buy(user_client, credits=200).status_code == 201


@pytest.mark.parametrize("field", ["success_url", "cancel_url"])
@pytest.mark.parametrize(
    "url",
    [
        "",
        "/buy/",
        "ftp://example.com/x",
        "javascript:alert(1)",
        "https://",
        42,
        None,
        "https://x/" + "a" * 2000,
    ],
)
def test_purchase_refuses_bad_return_urls(user_client, stripe_double, field, url):
    before = table_counts()

    response = buy(user_client, **{field: url})

    assert response.status_code == 400
    assert field in response.json()
    assert table_counts() == before


def test_purchase_reports_every_bad_field_at_once(user_client, stripe_double):
    response = user_client.post(PURCHASES, {"credits": 1}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"credits", "success_url", "cancel_url"}


def test_purchase_without_stripe_key_is_503_payments_disabled(user_client, settings):
    settings.STRIPE_API_KEY = ""
    before = table_counts()

    response = buy(user_client)

    assert response.status_code == 503
    assert response.json()["code"] == "payments_disabled"
    assert table_counts() == before


def test_purchase_when_stripe_is_unreachable_is_502_and_leaves_it_expired(
    user_client, stripe_double, settings
):
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    response = buy(user_client)

    assert response.status_code == 502
    assert response.json()["code"] == "payment_provider_error"
    purchase = Purchase.objects.get()
    assert (purchase.status, purchase.stripe_session_id, purchase.transaction) == ("expired", None, None)


def test_purchase_needs_authentication(stripe_double):
    assert APIClient().post(PURCHASES, BODY, format="json").status_code == 401
    assert APIClient().get(PURCHASES).status_code == 401


def test_purchases_lists_only_the_callers_newest_first(user, user_client, stripe_double):
    first, _ = started(user_client, stripe_double, credits=5)
    second, _ = started(user_client, stripe_double, credits=6)
    other = client_for(UserFactory())
    theirs, _ = started(other, stripe_double)

    listed = user_client.get(PURCHASES).json()["results"]

    assert [row["id"] for row in listed] == [second["id"], first["id"]]
    assert user_client.get(f"{PURCHASES}/{first['id']}").json()["credits"] == 5
    assert user_client.get(f"{PURCHASES}/{theirs['id']}").status_code == 404


# --- the webhook: a paid session becomes credits, once ---------------------------------------------


def test_paid_session_credits_the_purchase_once(user, user_client, stripe_double):
    body, session = started(user_client, stripe_double)

    response = deliver(APIClient(), "checkout.session.completed", paid(session))

    assert response.status_code == 200
    assert response.json() == {"received": True, "outcome": "credited"}
    [row] = ledger_purchase_rows(user)
    assert row.amount == Decimal("500")
    assert row.reason == f"Stripe Checkout {session['id']}"
    assert row.initiated_by is None
    purchase = Purchase.objects.get(pk=body["id"])
    assert (purchase.status, purchase.transaction_id) == ("paid", row.pk)
    assert purchase.paid_at is not None
    assert Wallet.objects.get(user=user).balance == Decimal("500")
    listed = user_client.get(f"{PURCHASES}/{body['id']}").json()
    assert (listed["status"], listed["transaction"], listed["checkout_url"]) == ("paid", row.pk, None)
    assert_ledger_clean()


def test_check_ledger_holds_paid_purchases_to_their_rows(user, user_client, stripe_double):
    """check_ledger: a paid purchase is credited by a purchase row of its credits, and a purchase row
    credits a paid purchase; a tampered purchase, or a purchase row written around the webhook, shows."""
    from billing.services.ledger import append

    body, session = started(user_client, stripe_double)
    deliver(APIClient(), "checkout.session.completed", paid(session))
    assert_ledger_clean()

    Purchase.objects.filter(pk=body["id"]).update(credits=400)  # no longer what its row credited
    assert any(f"paid purchase {body['id']}" in d.problem for d in check_ledger().discrepancies)
    Purchase.objects.filter(pk=body["id"]).update(credits=500)
    assert_ledger_clean()

    with transaction.atomic():
        stray = append(user_id=user.pk, kind="purchase", amount=Decimal("5"), reason="around the webhook")
    [problem] = [d.problem for d in check_ledger().discrepancies]
    assert problem == f"purchase row {stray.pk} credits no paid purchase"


def test_replayed_event_credits_nothing_more(user, user_client, stripe_double):
    _, session = started(user_client, stripe_double)
    payload, signature = signed_event("checkout.session.completed", paid(session))

    outcomes = [post_webhook(APIClient(), payload, signature).json()["outcome"] for _ in range(3)]
    # Stripe also re-sends an event as a new delivery, signed anew.
    outcomes.append(deliver(APIClient(), "checkout.session.completed", paid(session)).json()["outcome"])

    assert outcomes == ["credited", "already_paid", "already_paid", "already_paid"]
    assert len(ledger_purchase_rows(user)) == 1
    assert Wallet.objects.get(user=user).balance == Decimal("500")
    assert_ledger_clean()


def test_event_arriving_before_the_create_call_returned_credits_once(user, user_client, stripe_double):
    """Stripe's webhook can beat the create call's answer: the purchase is found by its reference."""
    create = stripe_checkout.create_session
    outcomes = []

    def create_then_paid_at_once(**kwargs):
        session = create(**kwargs)
        assert Purchase.objects.get(pk=kwargs["purchase_id"]).stripe_session_id is None
        double_session = paid(stripe_double.sessions[session.id])
        outcomes.append(deliver(APIClient(), "checkout.session.completed", double_session).json()["outcome"])
        return session

    with mock.patch.object(stripe_checkout, "create_session", create_then_paid_at_once):
        response = buy(user_client)

    assert outcomes == ["credited"]
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "paid"
    purchase = Purchase.objects.get(pk=body["id"])
    assert purchase.stripe_session_id.startswith("cs_test_")
    assert len(ledger_purchase_rows(user)) == 1
    # Delivered again once the session id is recorded: found by it, nothing more.
    session = paid(stripe_double.sessions[purchase.stripe_session_id])
    assert deliver(APIClient(), "checkout.session.completed", session).json()["outcome"] == "already_paid"
    assert len(ledger_purchase_rows(user)) == 1
    assert_ledger_clean()


def test_session_is_found_by_metadata_when_client_reference_is_missing(user, user_client, stripe_double):
    _, session = started(user_client, stripe_double)
    session = {**paid(session), "client_reference_id": None}

    assert deliver(APIClient(), "checkout.session.completed", session).json()["outcome"] == "credited"
    assert len(ledger_purchase_rows(user)) == 1


def test_a_reference_made_by_another_installation_names_no_purchase(
    user, user_client, stripe_double, settings
):
    """Another database on the same Stripe account has a purchase with this id too: its session is not ours."""
    body, _ = started(user_client, stripe_double)
    Purchase.objects.filter(pk=body["id"]).update(stripe_session_id=None)  # as while the create call runs
    ours = settings.SECRET_KEY
    settings.SECRET_KEY = "another installation's secret key, long enough to sign with"
    foreign = {
        "id": "cs_test_foreign",
        "client_reference_id": reference(body["id"]),
        "metadata": {"reference": reference(body["id"]), "purchase_id": str(body["id"])},
        "payment_status": "paid",
        "amount_total": 500,
        "currency": "usd",
    }
    settings.SECRET_KEY = ours

    assert deliver(APIClient(), "checkout.session.completed", foreign).json()["outcome"] == "unknown_session"
    assert ledger_purchase_rows(user) == []


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(lambda payload: None, id="missing"),
        pytest.param(lambda payload: "", id="empty"),
        pytest.param(lambda payload: "nonsense", id="garbage"),
        pytest.param(lambda payload: "t=notanumber,v1=00", id="bad-timestamp"),
        pytest.param(
            lambda payload: signed_event_signature(payload, secret="whsec_wrong"), id="wrong-secret"
        ),
        pytest.param(
            lambda payload: signed_event_signature(payload, timestamp=stale_timestamp()), id="stale"
        ),
        pytest.param(
            lambda payload: signed_event_signature(payload).replace("v1=", "v0="), id="other-scheme"
        ),
        pytest.param(lambda payload: signed_event_signature(payload + " "), id="reused-with-other-body"),
    ],
)
def test_webhook_with_a_bad_signature_is_400_and_writes_nothing(user_client, stripe_double, signature):
    _, session = started(user_client, stripe_double)
    payload, _ = signed_event("checkout.session.completed", paid(session))
    before = table_counts()

    response = post_webhook(APIClient(), payload, signature(payload))

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_signature"
    assert table_counts() == before
    assert Purchase.objects.get().status == "pending"


def signed_event_signature(payload: str, *, secret: str = WEBHOOK_SECRET, timestamp=None) -> str:
    from scripts.stripe_double import sign

    return sign(payload, secret, timestamp)


def test_signature_for_another_event_does_not_carry_over(user, user_client, stripe_double):
    """A signature captured from one (harmless) event, sent with a paid event's body: refused."""
    _, session = started(user_client, stripe_double)
    _, harmless_signature = signed_event("checkout.session.expired", session)
    paid_payload, _ = signed_event("checkout.session.completed", paid(session))

    assert post_webhook(APIClient(), paid_payload, harmless_signature).status_code == 400
    assert ledger_purchase_rows(user) == []


def test_signed_body_that_is_not_an_event_is_400(stripe_double):
    from scripts.stripe_double import sign

    response = post_webhook(APIClient(), "not json", sign("not json", WEBHOOK_SECRET))

    assert response.status_code == 400


@pytest.mark.parametrize("body", ["[]", '"x"', "null", "42", "true", '{"a":' * 20000 + "1" + "}" * 20000])
def test_signed_json_that_is_not_an_object_is_400_and_writes_nothing(stripe_double, body):
    from scripts.stripe_double import sign

    before = table_counts()
    response = post_webhook(APIClient(), body, sign(body, WEBHOOK_SECRET))

    assert response.status_code == 400
    assert "not a Stripe event" in response.json()["detail"]
    assert table_counts() == before


@pytest.mark.parametrize("event_type", ["checkout.session.completed", "checkout.session.expired"])
# 245 characters fit the purchase's column but not the ledger key made of it (was a 500).
@pytest.mark.parametrize("session_id", ["cs_test_\x00", "", "cs_" + "x" * 300, "cs_" + "x" * 242])
def test_a_session_id_stripe_could_not_have_sent_names_no_purchase(
    user, user_client, stripe_double, event_type, session_id
):
    # The purchase's own reference is right; the id is not one Stripe makes (a NUL, empty, too long).
    _, session = started(user_client, stripe_double)
    Purchase.objects.update(stripe_session_id=None)  # as when the event beats the create call's answer
    before = table_counts()

    response = deliver(APIClient(), event_type, {**paid(session), "id": session_id})

    assert response.status_code == 200
    assert response.json()["outcome"] == "unknown_session"
    assert table_counts() == before
    assert Purchase.objects.get().stripe_session_id is None


def test_webhook_without_a_secret_configured_is_503(user_client, stripe_double, settings):
    _, session = started(user_client, stripe_double)
    payload, signature = signed_event("checkout.session.completed", paid(session))
    settings.STRIPE_WEBHOOK_SECRET = ""

    response = post_webhook(APIClient(), payload, signature)

    assert response.status_code == 503
    assert response.json()["code"] == "payments_disabled"
    assert Purchase.objects.get().status == "pending"


def test_unknown_session_is_200_logged_and_writes_nothing(user_client, stripe_double, caplog):
    _, session = started(user_client, stripe_double)
    stranger = {
        **paid(session),
        "id": "cs_test_unknown",
        "client_reference_id": "purchase-999999",
        "metadata": {},
    }
    before = table_counts()

    with caplog.at_level(logging.WARNING, logger="billing.services.purchases"):
        response = deliver(APIClient(), "checkout.session.completed", stranger)

    assert response.status_code == 200
    assert response.json()["outcome"] == "unknown_session"
    assert table_counts() == before
    assert any(getattr(record, "stripe_session_id", None) == "cs_test_unknown" for record in caplog.records)


def test_session_naming_a_purchase_recorded_with_another_session_credits_nothing(
    user, user_client, stripe_double
):
    _, session = started(user_client, stripe_double)
    impostor = {**paid(session), "id": "cs_test_other"}

    assert deliver(APIClient(), "checkout.session.completed", impostor).json()["outcome"] == "unknown_session"
    assert ledger_purchase_rows(user) == []


def test_paid_amount_other_than_the_purchase_credits_nothing(user, user_client, stripe_double, caplog):
    _, session = started(user_client, stripe_double)

    response = deliver(APIClient(), "checkout.session.completed", {**paid(session), "amount_total": 1})

    assert response.json()["outcome"] == "amount_mismatch"
    assert ledger_purchase_rows(user) == []
    assert Purchase.objects.get().status == "pending"


def test_completed_but_unpaid_session_waits_for_its_payment(user, user_client, stripe_double):
    _, session = started(user_client, stripe_double)
    completed_unpaid = {**session, "status": "complete", "payment_status": "unpaid"}

    assert deliver(APIClient(), "checkout.session.completed", completed_unpaid).json()["outcome"] == (
        "awaiting_payment"
    )
    assert ledger_purchase_rows(user) == []
    outcome = deliver(APIClient(), "checkout.session.async_payment_succeeded", paid(session)).json()[
        "outcome"
    ]
    assert outcome == "credited"
    assert len(ledger_purchase_rows(user)) == 1


def test_expired_session_marks_the_purchase_expired(user, user_client, stripe_double):
    body, session = started(user_client, stripe_double)
    before = CreditTransaction.objects.count()

    response = deliver(APIClient(), "checkout.session.expired", {**session, "status": "expired"})

    assert response.json()["outcome"] == "expired"
    assert Purchase.objects.get(pk=body["id"]).status == "expired"
    assert user_client.get(f"{PURCHASES}/{body['id']}").json()["checkout_url"] is None
    assert CreditTransaction.objects.count() == before
    again = deliver(APIClient(), "checkout.session.expired", {**session, "status": "expired"})
    assert again.json()["outcome"] == "already_expired"


def test_expiry_after_payment_leaves_it_paid(user, user_client, stripe_double):
    _, session = started(user_client, stripe_double)
    deliver(APIClient(), "checkout.session.completed", paid(session))

    response = deliver(APIClient(), "checkout.session.expired", {**session, "status": "expired"})

    assert response.json()["outcome"] == "already_paid"
    assert Purchase.objects.get().status == "paid"
    assert len(ledger_purchase_rows(user)) == 1


def test_the_doubles_expire_call_sends_a_signed_expired_event(user_client, stripe_double):
    _, session = started(user_client, stripe_double)
    sent = []
    stripe_double.webhook_url = "http://127.0.0.1:9/unused"
    with mock.patch.object(
        type(stripe_double), "_deliver", lambda self, kind, sid, payload: sent.append(payload) or 200
    ):
        stripe_double.expire(session["id"])

    [payload] = sent
    assert post_webhook(APIClient(), payload, signed_event_signature(payload)).json()["outcome"] == "expired"


@pytest.mark.parametrize(
    "event_type", ["payment_intent.succeeded", "checkout.session.async_payment_failed", "customer.created"]
)
def test_other_event_types_answer_200_and_change_nothing(user_client, stripe_double, event_type):
    _, session = started(user_client, stripe_double)
    before = table_counts()

    response = deliver(APIClient(), event_type, paid(session))

    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"
    assert table_counts() == before


@pytest.mark.parametrize("event_type", [["checkout.session.completed"], {"a": 1}, 7, None])
def test_a_signed_event_whose_type_is_not_text_is_ignored(user_client, stripe_double, event_type):
    """Signed, so Stripe's; yet its `type` names no event we act on (schemathesis sent a list): 200, nothing written."""
    _, session = started(user_client, stripe_double)
    before = table_counts()

    response = deliver(APIClient(), event_type, paid(session))

    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"
    assert table_counts() == before


def test_webhook_needs_no_csrf_token_or_login(user_client, stripe_double):
    _, session = started(user_client, stripe_double)
    client = APIClient(enforce_csrf_checks=True)

    assert deliver(client, "checkout.session.completed", paid(session)).status_code == 200


# --- the console ---------------------------------------------------------------------------------


def test_console_lists_every_purchase_read_only_and_finds_it_by_session(
    admin_client, user_client, stripe_double
):
    body, session = started(user_client, stripe_double)
    deliver(APIClient(), "checkout.session.completed", paid(session))
    other, _ = started(client_for(UserFactory(username="zed")), stripe_double)
    purchase = Purchase.objects.get(pk=body["id"])

    listing = admin_client.get("/admin/billing/purchase/")
    found = admin_client.get("/admin/billing/purchase/", {"q": session["id"]})
    by_name = admin_client.get("/admin/billing/purchase/", {"q": "zed"})
    page = admin_client.get(f"/admin/billing/purchase/{purchase.pk}/change/")

    assert listing.status_code == 200
    assert session["id"] in listing.content.decode()
    assert [row.pk for row in found.context["cl"].result_list] == [purchase.pk]
    assert [row.pk for row in by_name.context["cl"].result_list] == [other["id"]]
    text = page.content.decode()
    assert page.status_code == 200
    assert f"/admin/billing/credittransaction/{purchase.transaction_id}/change/" in text
    assert 'name="_save"' not in text
    assert "5.00 USD" in text and "5.000000" not in text  # money in its currency's places
    assert admin_client.get("/admin/billing/purchase/add/").status_code == 403
    assert admin_client.post(f"/admin/billing/purchase/{purchase.pk}/delete/").status_code == 403


def test_support_and_finance_groups_may_read_purchases(db):
    from django.contrib.auth.models import Group

    for name in ("Support", "Finance"):
        assert Group.objects.get(name=name).permissions.filter(codename="view_purchase").exists()


def test_demo_data_has_a_user_with_a_completed_purchase():
    from io import StringIO

    from django.core.management import call_command

    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())  # again: still one

    [purchase] = Purchase.objects.filter(user__username="alice")
    assert (purchase.status, purchase.credits) == ("paid", 1000)
    assert purchase.transaction.kind == "purchase" and purchase.transaction.amount == Decimal("1000")
    assert_ledger_clean()


def test_a_purchase_is_never_started_inside_a_callers_transaction(user, stripe_double):
    """The Stripe call must hold no transaction open: the service refuses to run inside one."""
    from django.db import transaction

    from billing.services.purchases import buy_credits

    with pytest.raises(RuntimeError), transaction.atomic():
        buy_credits(user=user, **BODY)
    assert stripe_double.sessions == {}


def test_purchases_started_are_throttled_per_user(user_client, stripe_double, settings):
    settings.THROTTLE_PURCHASE_RATE = "2/hour"

    statuses = [buy(user_client).status_code for _ in range(3)]
    listed = user_client.get(PURCHASES)

    assert statuses == [201, 201, 429]
    assert Purchase.objects.count() == 2
    assert listed.status_code == 200  # reading is not counted
    assert buy(client_for(UserFactory())).status_code == 201  # another user has their own count


def test_a_refused_purchase_request_is_not_counted_against_the_rate(user_client, stripe_double, settings):
    settings.THROTTLE_PURCHASE_RATE = "2/hour"

    typos = [buy(user_client, credits=credits).status_code for credits in (0, 10**9, "ten", 2.5)]
    started = [buy(user_client).status_code for _ in range(3)]

    assert typos == [400, 400, 400, 400]
    assert started == [201, 201, 429]
    assert Purchase.objects.count() == 2


@pytest.mark.parametrize(
    ("api_base", "currency", "unit_price", "minimum_credits", "warned"),
    [
        ("https://api.stripe.com", "usd", "0.01", 5, True),  # 0.05 USD: under Stripe's 0.50
        ("https://api.stripe.com/", "usd", "0.01", 50, False),  # 0.50 USD: Stripe's minimum
        ("https://api.stripe.com", "gbp", "0.01", 30, False),  # 0.30 GBP
        ("https://api.stripe.com", "jpy", "1", 49, True),  # 49 JPY: under 50
        ("https://api.stripe.com", "xyz", "0.01", 1, False),  # a currency the table does not list
        ("http://127.0.0.1:12111", "usd", "0.01", 5, False),  # the double: no minimum
    ],
)
def test_the_smallest_purchase_is_checked_against_stripes_minimum_charge(
    settings, api_base, currency, unit_price, minimum_credits, warned
):
    from django.core.checks import run_checks

    settings.STRIPE_API_KEY, settings.STRIPE_WEBHOOK_SECRET = "sk_live_x", "whsec_x"
    settings.STRIPE_API_BASE, settings.CREDIT_CURRENCY = api_base, currency
    settings.CREDIT_UNIT_PRICE, settings.PURCHASE_MIN_CREDITS = Decimal(unit_price), minimum_credits
    found = [w for w in run_checks() if w.id == "billing.W002"]
    assert bool(found) == warned
    if warned:
        needed = {"usd": "50", "jpy": "50"}[currency]
        assert f"Set PURCHASE_MIN_CREDITS to at least {needed}" in found[0].hint
        # The section it names exists (it named "Configuration", which purchases.md has no heading for).
        (section,) = re.findall(r'docs/purchases.md, "([^"]+)"', found[0].hint)
        headings = re.findall(r"^#+ (.+)$", (settings.BASE_DIR / "docs" / "purchases.md").read_text(), re.M)
        assert section in headings


def test_no_purchase_check_while_payments_are_off(settings):
    from django.core.checks import run_checks

    settings.STRIPE_API_KEY = ""
    settings.PURCHASE_MIN_CREDITS = 1
    assert not [w for w in run_checks() if w.id == "billing.W002"]


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        ("5", "usd", "5.00 USD"),
        ("500", "jpy", "500 JPY"),
        ("1.25", "kwd", "1.250 KWD"),
        ("0.5", "eur", "0.50 EUR"),
    ],
)
def test_an_amount_of_money_is_shown_in_its_currencys_places(amount, currency, shown):
    assert stripe_checkout.format_currency(Decimal(amount), currency) == shown
