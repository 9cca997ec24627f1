"""The allowances page: recurring credits staff define and assign; what was issued, read-only; every lot, read-only."""

from django.contrib import admin

from billing.forms import AllowanceForm
from billing.models import Allowance, AllowanceIssue, CreditLot
from core.admin import ReadOnlyAdminMixin
from core.paginators import EstimatedCountPaginator


class AllowanceIssueInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The periods already issued (newest first); written only by the periodic job."""

    model = AllowanceIssue
    fields = ["period_start", "user", "transaction", "created_at"]
    readonly_fields = fields
    ordering = ["-period_start", "-id"]
    extra = 0
    max_num = 0
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "transaction")


@admin.register(Allowance)
class AllowanceAdmin(admin.ModelAdmin):
    """Staff define an allowance and assign it to users or groups; the job issues one lot per user and period.

    Changing `credits` or `expires_with_period` applies to the lots issued from then on (the next
    period's); lots already issued keep their terms. `period` is read-only once the allowance was
    issued (Allowance.save refuses it too): a new period type would start a period its users already
    had, and issue them again in it; to change it, deactivate the allowance and add a new one.
    Deleting is refused once an allowance was issued (its issues protect it): make it inactive instead.
    """

    form = AllowanceForm
    list_display = ["name", "credits", "period", "expires_with_period", "active", "created_at"]
    list_filter = ["active", "period"]
    search_fields = ["name"]
    filter_horizontal = ["users", "groups"]
    fields = ["name", "credits", "period", "expires_with_period", "active", "users", "groups"]
    inlines = [AllowanceIssueInline]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.issues.exists():
            return ["period"]  # its help text (AllowanceForm) says what to do instead
        return []


@admin.register(CreditLot)
class CreditLotAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every lot: what entered a wallet, what is left, when it expires; read-only, moved by services."""

    list_display = [
        "id",
        "user",
        "source",
        "category",
        "priority",
        "effective_at",
        "expires_at",
        "amount",
        "remaining",
    ]
    list_select_related = ["wallet__user"]
    list_filter = ["source", "category"]
    search_fields = ["wallet__user__username", "wallet__user__email"]
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    @admin.display(description="user", ordering="wallet__user__username")
    def user(self, lot):
        return lot.wallet.user
