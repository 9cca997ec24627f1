"""The "Buy credits" page: the user's purchases, and a purchase started through the same service as the API.

The form posts here; the purchase service creates the Checkout Session and the browser is then sent to
Stripe's page through /buy/<id>/checkout/, an interstitial of ours (the site's content security policy
keeps form submissions, and their redirects, on this origin; a page's refresh to Stripe is a plain
navigation). Stripe sends the buyer back here with ?session_id=..., or ?cancelled=1. A resent form (back
and resend, a double click without script) starts no second checkout: it is sent to the first one's.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from rest_framework.exceptions import Throttled

from billing.models import Purchase
from billing.selectors import purchases_for_user
from billing.services import buy_credits as start_purchase
from billing.services import payments_enabled
from billing.views_purchases import PurchaseThrottle
from core.errors import DomainError
from core.text import UNSTORABLE
from web.forms import BuyCreditsForm
from web.submissions import Submission

PURCHASES_PER_PAGE = 20


@login_required
@require_http_methods(["GET", "POST"])
def buy_credits(request):
    enabled = payments_enabled()
    form = BuyCreditsForm(request.POST or None)
    if request.method == "POST" and enabled and form.is_valid():
        submission = Submission(request=request, form=form, purpose="purchase")
        if not submission.claim():
            return _sent_before(request, submission.answer())
        here = request.build_absolute_uri(reverse("web:buy-credits"))
        try:
            with submission.writing():  # refused: no payable purchase, the same form may be sent again
                purchase = start_purchase(
                    user=request.user,
                    credits=form.cleaned_data["credits"],
                    success_url=here + "?session_id={CHECKOUT_SESSION_ID}",
                    cancel_url=here + "?cancelled=1",
                    # The API's count, one rate per user: purchases started, not refused requests.
                    before_start=lambda: PurchaseThrottle().allow_request(request, None),
                )
        except Throttled as exc:
            form.add_error(None, exc.detail["detail"])
        except DomainError as exc:
            form.add_error("credits" if exc.field == "credits" else None, exc.message)
        else:
            submission.done(purchase.pk)
            return redirect("web:purchase-checkout", pk=purchase.pk)
    purchases = purchases_for_user(user=request.user)
    context = {
        "nav": "wallet",
        "enabled": enabled,
        "form": form,
        "page": Paginator(purchases, PURCHASES_PER_PAGE).get_page(request.GET.get("page")),
        "returned": _returned(purchases, request.GET.get("session_id", "")),
        "cancelled": request.GET.get("cancelled") == "1",
    }
    return render(request, "web/buy_credits.html", context)


def _sent_before(request, purchase_pk: int | None):
    """The answer to a form sent again: the checkout its first post started, or, while that one is still
    being started, this page, where it will be listed with its Pay link."""
    if purchase_pk is not None:
        messages.info(request, "This form was already sent; this is the checkout it started.")
        return redirect("web:purchase-checkout", pk=purchase_pk)
    messages.warning(
        request,
        "This form was already sent and its checkout is still being started; pay it from "
        "Your purchases below once it is listed.",
    )
    return redirect("web:buy-credits")


def _returned(purchases, session_id: str) -> Purchase | None:
    """The purchase Stripe sent the buyer back from (their own only), if the address names one."""
    # The address is anyone's to write: what no Stripe id holds (a NUL, which PostgreSQL cannot even
    # compare) finds nothing, without asking the database.
    if not session_id.startswith("cs_") or len(session_id) > 255 or UNSTORABLE.search(session_id):
        return None
    return purchases.filter(stripe_session_id=session_id).first()


@login_required
def purchase_checkout(request, pk: int):
    """Send the buyer on to Stripe's page for one of their own pending purchases."""
    purchase = get_object_or_404(purchases_for_user(user=request.user), pk=pk)
    if purchase.status != Purchase.Status.PENDING or not purchase.checkout_url:
        messages.info(request, f"Purchase {purchase.pk} is {purchase.status}; there is nothing left to pay.")
        return redirect("web:buy-credits")
    return render(request, "web/purchase_checkout.html", {"nav": "wallet", "purchase": purchase})
