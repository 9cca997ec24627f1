"""The holds page: credits reserved by turns in flight, and how each hold ended; read-only."""

from django.contrib import admin

from billing.admin.events import call_link
from billing.models import CreditHold
from core.admin import ReadOnlyAdminMixin
from core.paginators import EstimatedCountPaginator


@admin.register(CreditHold)
class CreditHoldAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Credits reserved by turns in flight, and how each hold ended: read-only, written by services."""

    list_display = [
        "id",
        "created_at",
        "user",
        "amount",
        "status",
        "shadow_refusal",
        "expires_at",
        "progress_at",
        "call",
    ]
    list_display_links = ["id", "created_at"]
    list_select_related = ["wallet__user"]
    list_filter = ["status", "shadow_refusal", "created_at"]
    search_fields = ["wallet__user__username", "wallet__user__email"]
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator  # no full COUNT(*) of a big table per page view

    @admin.display(description="user", ordering="wallet__user__username")
    def user(self, hold):
        return hold.wallet.user

    @admin.display(description="call")
    def call(self, hold):
        # From the id on the row, as the ledger's: showing `llm_call` itself read each call (one query per row).
        return call_link(hold.llm_call_id)
