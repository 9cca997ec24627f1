"""The purchases page: every purchase of credits through Stripe Checkout, with its session and ledger row; read-only."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from billing.models import Purchase
from billing.stripe_checkout import format_currency
from core.admin import ReadOnlyAdminMixin
from core.paginators import EstimatedCountPaginator


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Purchases as Stripe and the ledger left them: written only by the purchase service and the webhook."""

    list_display = [
        "id",
        "created_at",
        "user",
        "credits",
        "price",
        "status",
        "stripe_session_id",
        "ledger_row",
        "paid_at",
    ]
    list_display_links = ["id", "created_at"]
    list_select_related = ["user"]
    list_filter = ["status", "created_at"]
    # A user by name or email, a session id as Stripe's dashboard shows it, or the purchase's id.
    search_fields = ["=id", "user__username", "user__email", "=stripe_session_id"]
    search_help_text = "Username, email, purchase id, or Stripe Checkout Session id (cs_...)."
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = [
        "user",
        "credits",
        "price",
        "status",
        "stripe_session_id",
        "checkout_url",
        "ledger_row",
        "created_at",
        "paid_at",
        "updated_at",
    ]
    readonly_fields = fields

    @admin.display(description="amount", ordering="amount")
    def price(self, purchase):
        return format_currency(purchase.amount, purchase.currency)

    @admin.display(description="ledger row", ordering="transaction_id")
    def ledger_row(self, purchase):
        if purchase.transaction_id is None:
            return "-"
        url = reverse("admin:billing_credittransaction_change", args=[purchase.transaction_id])
        return format_html('<a href="{}">#{}</a>', url, purchase.transaction_id)
