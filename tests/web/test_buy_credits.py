"""The "Buy credits" page: a purchase started through the purchase service, on to Stripe's page (the double),
back with the result; the user's purchases listed, owner-only; CSRF; linked from the top-up prompt."""

import re
import uuid
from decimal import Decimal
from html import unescape
from types import SimpleNamespace

import pytest
from django.test import Client
from rest_framework.test import APIClient

from billing.models import Purchase, Wallet
from tests.factories import UserFactory
from tests.stripe_fixtures import deliver, paid, table_counts
from web.submissions import Submission

pytestmark = pytest.mark.django_db


def buy_form(credits, submission: str | None = None) -> dict:
    """The form as one rendering of it sends it (each rendering has its own token)."""
    return {"credits": credits, "submission": submission or uuid.uuid4().hex}


def test_signed_out_visitor_is_sent_to_sign_in(client):
    for path in ("/buy/", "/buy/1/checkout/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/signin/?next=")


def test_buying_sends_the_user_to_the_doubles_page_and_back(web, user, stripe_double):
    page = web.get("/buy/")
    assert page.status_code == 200
    assert 'id="buy-form"' in page.content.decode()

    response = web.post("/buy/", buy_form("300"))

    purchase = Purchase.objects.get(user=user)
    assert (purchase.credits, purchase.status) == (300, "pending")
    assert response.status_code == 302 and response["Location"] == f"/buy/{purchase.pk}/checkout/"
    session = stripe_double.sessions[purchase.stripe_session_id]
    assert session["success_url"] == "http://testserver/buy/?session_id={CHECKOUT_SESSION_ID}"
    assert session["cancel_url"] == "http://testserver/buy/?cancelled=1"
    interstitial = web.get(response["Location"]).content.decode()
    # A page refresh (a navigation, not a form's redirect) and a link take the user to Stripe's page.
    assert f'<meta http-equiv="refresh" content="0;url={session["url"]}">' in unescape(interstitial)
    assert f'href="{session["url"]}"' in interstitial

    deliver(APIClient(), "checkout.session.completed", paid(session))  # what Pay on the double does
    back = web.get("/buy/", {"session_id": session["id"]}).content.decode()
    assert "300 credits were added to your wallet" in back
    assert "paid, credited" in back
    assert Wallet.objects.get(user=user).balance == Decimal("300")


def test_returning_before_the_webhook_says_the_payment_is_being_confirmed(web, user, stripe_double):
    web.post("/buy/", buy_form("50"))
    session_id = Purchase.objects.get().stripe_session_id

    text = web.get("/buy/", {"session_id": session_id}).content.decode()

    assert "Stripe is confirming your payment of 0.50 USD" in text


@pytest.mark.parametrize("session_id", ["cs_\x00", "cs_a\x00b", "cs_" + "x" * 300, "nope"])
def test_a_malformed_session_id_is_the_page_with_no_result(web, stripe_double, session_id):
    response = web.get("/buy/", {"session_id": session_id})

    assert response.status_code == 200
    assert response.context["returned"] is None
    assert 'id="purchase-result"' not in response.content.decode()


def test_cancelled_checkout_says_nothing_was_charged(web, stripe_double):
    assert "without paying; nothing was charged" in web.get("/buy/", {"cancelled": "1"}).content.decode()


@pytest.mark.parametrize("credits", ["4", "10001", "2.5", "lots", ""])
def test_bad_credits_are_shown_on_the_field_and_kept(web, stripe_double, credits):
    before = table_counts()

    response = web.post("/buy/", buy_form(credits))

    assert response.status_code == 200
    assert response.context["form"].errors["credits"]
    assert f'value="{credits}"' in response.content.decode() or credits == ""
    assert table_counts() == before
    assert stripe_double.sessions == {}


def test_stripe_unreachable_is_a_message_not_an_error_page(web, stripe_double, settings):
    from tests.live_server import free_port

    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"

    response = web.post("/buy/", buy_form("100"))

    assert response.status_code == 200
    assert "could not start a checkout" in response.content.decode()
    assert "expired, not charged" in response.content.decode()


def test_without_payments_the_page_says_so_and_takes_no_purchase(web, settings):
    settings.STRIPE_API_KEY = ""

    page = web.get("/buy/").content.decode()
    response = web.post("/buy/", buy_form("100"))

    assert 'id="payments-disabled"' in page and 'id="buy-form"' not in page
    assert response.status_code == 200
    assert not Purchase.objects.exists()


def test_the_form_needs_its_csrf_token(user, stripe_double):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    assert client.post("/buy/", buy_form("100")).status_code == 403
    assert not Purchase.objects.exists()


def test_the_form_submits_once(web, stripe_double):
    form = re.search(r"<form[^>]*id=\"buy-form\"[^>]*>", web.get("/buy/").content.decode()).group(0)
    assert "data-once" in form  # web/static/web/forms.js: a double click sends one request


def test_a_resent_form_goes_to_the_first_checkout_and_starts_no_second(web, user, stripe_double):
    form = buy_form("300", submission="r" * 32)
    first = web.post("/buy/", form)
    purchase = Purchase.objects.get(user=user)

    again = web.post("/buy/", form)

    assert (
        again.status_code == 302 and again["Location"] == first["Location"] == f"/buy/{purchase.pk}/checkout/"
    )
    assert Purchase.objects.filter(user=user).count() == 1
    assert len(stripe_double.sessions) == 1
    assert "already sent" in web.get(again["Location"]).content.decode()


def test_a_form_resent_while_its_checkout_is_being_started_says_so(web, user, stripe_double):
    form = buy_form("300", submission="p" * 32)
    request, bound = SimpleNamespace(user=user), SimpleNamespace(cleaned_data=form)
    assert Submission(request=request, form=bound, purpose="purchase").claim()  # the first post, mid-way

    response = web.post("/buy/", form, follow=True)

    assert response.redirect_chain == [("/buy/", 302)]
    assert "still being started" in response.content.decode()
    assert not Purchase.objects.exists() and stripe_double.sessions == {}


def test_a_refused_form_can_be_sent_again_once_corrected(web, user, stripe_double, settings):
    settings.THROTTLE_PURCHASE_RATE = "1/hour"
    web.post("/buy/", buy_form("10"))
    refused = buy_form("10", submission="t" * 32)
    assert "Too many requests" in web.post("/buy/", refused).content.decode()

    settings.THROTTLE_PURCHASE_RATE = None
    response = web.post("/buy/", refused)

    assert response.status_code == 302
    assert Purchase.objects.filter(user=user).count() == 2


def test_another_users_purchase_is_neither_listed_nor_payable(web, stripe_double):
    other = Client()
    other.force_login(UserFactory())
    other.post("/buy/", buy_form("100"))
    theirs = Purchase.objects.get()

    assert web.get(f"/buy/{theirs.pk}/checkout/").status_code == 404
    assert web.get("/buy/", {"session_id": theirs.stripe_session_id}).context["returned"] is None
    assert not web.get("/buy/").context["page"].object_list


def test_a_paid_purchase_has_nothing_left_to_pay(web, user, stripe_double):
    web.post("/buy/", buy_form("100"))
    purchase = Purchase.objects.get()
    deliver(
        APIClient(), "checkout.session.completed", paid(stripe_double.sessions[purchase.stripe_session_id])
    )

    response = web.get(f"/buy/{purchase.pk}/checkout/")

    assert response.status_code == 302 and response["Location"] == "/buy/"


def test_the_top_up_prompt_and_the_wallet_link_to_buying(web):
    assert 'href="/buy/"' in web.get("/").content.decode()


def test_the_purchases_list_takes_a_bounded_number_of_queries(
    web, user, stripe_double, django_assert_max_num_queries
):
    for credits in ("10", "20", "30"):
        web.post("/buy/", buy_form(credits))

    with django_assert_max_num_queries(8):
        assert web.get("/buy/").status_code == 200


def test_the_page_shares_the_apis_purchase_rate(web, user, stripe_double, settings):
    settings.THROTTLE_PURCHASE_RATE = "1/hour"
    assert web.post("/buy/", buy_form("10")).status_code == 302

    response = web.post("/buy/", buy_form("10"))

    assert response.status_code == 200
    assert "Too many requests; try again in" in response.content.decode()
    assert Purchase.objects.count() == 1
    assert 'value="10"' in response.content.decode()


@pytest.mark.parametrize(
    ("environment", "double_runs"),
    [({}, True), ({"STRIPE_API_KEY": "sk_test_real"}, False), ({"DEBUG": "false"}, False)],
)
def test_make_run_starts_the_stripe_double_only_in_debug_without_a_key(environment, double_runs):
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIPE_") and k != "DEBUG"}
    planned = subprocess.run(
        ["make", "-n", "run", *(f"{k}={v}" for k, v in environment.items())],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ("scripts/stripe_double.py" in planned) is double_runs
    if double_runs:
        assert "--webhook-url http://127.0.0.1:8000/api/v1/payments/stripe/webhook" in planned
