"""The wallet page: balance, what is available, low-balance and enforcement state, usage by day, and the ledger."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from billing.customer_selectors import ledger_page, usage_by_day, wallet_state
from core.api_fields import MAX_ID
from web.charts import usage_chart

CHART_DAYS = 30


@login_required
def wallet(request):
    before = request.GET.get("before", "")
    before = int(before) if before.isdigit() and int(before) <= MAX_ID else None
    context = {
        "nav": "wallet",
        "state": wallet_state(user=request.user),
        "ledger": ledger_page(user=request.user, before=before),
        "older": before is not None,
        "chart": usage_chart(usage_by_day(user_id=request.user.pk, days=CHART_DAYS)),
        "chart_days": CHART_DAYS,
    }
    return render(request, "web/wallet.html", context)
