"""The wallet page: balance, what is available, low-balance and enforcement state, the credit lots and their
expiries, the spending caps, usage by day, and the ledger."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from billing import services
from billing.customer_selectors import ledger_page, usage_by_day, wallet_state
from billing.lot_selectors import live_lots_page
from billing.models import SpendLimit
from billing.selectors import wallet_with_caps
from core.api_fields import id_from_text
from core.errors import DomainError
from core.money import format_money
from web.charts import usage_chart
from web.forms import SpendCapForm

CHART_DAYS = 30
LOTS = 20  # the first lots in burn order; the rest are counted ("and N more")
PERIOD_WORDS = {"day": "per day", "week": "per week", "month": "per month"}


@login_required
def wallet(request):
    return _wallet_page(request)


def _wallet_page(request, *, cap_form: SpendCapForm | None = None):
    before = id_from_text(request.GET.get("before", ""))
    caps = wallet_with_caps(user=request.user)
    if cap_form is None:
        own = caps.spend_cap
        initial = (
            {}
            if own is None
            else {"spend_cap": f"{own.amount.normalize():f}", "spend_cap_period": own.period}
        )
        cap_form = SpendCapForm(initial=initial)
    state = wallet_state(user=request.user)
    context = {
        "nav": "wallet",
        "state": state,
        "lots": live_lots_page(wallet_id=state.wallet_id, limit=LOTS),
        "caps": caps,
        "cap_form": cap_form,
        "ledger": ledger_page(user=request.user, before=before),
        "older": before is not None,
        "chart": usage_chart(usage_by_day(user_id=request.user.pk, days=CHART_DAYS)),
        "chart_days": CHART_DAYS,
    }
    return render(request, "web/wallet.html", context)


@never_cache
@login_required
@require_GET
def figures(request):
    """What is available now, as JSON, for the chat page's script after a streamed answer: the turn's `done`
    says the balance after it, and the balance less the credits other calls still hold (a key's, another
    tab's) is only known here. In the API's money format, as the page shows it."""
    state = wallet_state(user=request.user)
    return JsonResponse({"available": format_money(state.available), "low_balance": state.low_balance})


@login_required
@require_POST
def spend_cap(request):
    """Set, change or (with `remove`) clear the user's own cap, through the service the wallet API calls.

    A staff cap is a different row that this never touches: the user cannot raise or remove it.
    """
    done = reverse("web:wallet") + "#spend-cap"
    if "remove" in request.POST:
        services.set_spend_cap(user=request.user, kind=SpendLimit.Kind.USER_CAP, amount=None)
        messages.success(request, "Your spending cap is removed.")
        return redirect(done)
    form = SpendCapForm(request.POST)
    if form.is_valid():
        amount, period = form.cleaned_data["spend_cap"], form.cleaned_data["spend_cap_period"]
        try:
            services.set_spend_cap(
                user=request.user, kind=SpendLimit.Kind.USER_CAP, amount=amount, period=period
            )
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(
                request, f"Your spending cap is now {format_money(amount)} credits {PERIOD_WORDS[period]}."
            )
            return redirect(done)
    return _wallet_page(request, cap_form=form)
