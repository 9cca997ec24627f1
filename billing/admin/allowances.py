"""The allowances page: recurring credits staff define, assign and switch on or off; what was issued and every lot, read-only."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from billing.forms import AllowanceForm
from billing.lot_selectors import allowance_issues_page
from billing.models import Allowance, AllowanceIssue, CreditLot
from billing.services.allowances import set_allowances_active
from core.admin import ReadOnlyAdminMixin
from core.money import format_money
from core.paginators import EstimatedCountPaginator

ISSUES_ON_ALLOWANCE_PAGE = 20


def _allowances_label(count: int) -> str:
    return f"{count} allowance" if count == 1 else f"{count} allowances"


@admin.register(Allowance)
class AllowanceAdmin(admin.ModelAdmin):
    """Staff define an allowance and assign it to users or groups; the job issues one lot per user and period.

    Changing `credits` or `expires_with_period` applies to the lots issued from then on (the next
    period's); lots already issued keep their terms. `period` is read-only once the allowance was
    issued (Allowance.save refuses it too): a new period type would start a period its users already
    had, and issue them again in it; to change it, deactivate the allowance and add a new one.
    Deleting is refused once an allowance was issued (its issues protect it): make it inactive instead
    (unticked on its page, or the list's "Deactivate selected allowances").

    The page posts a fixed number of fields however big the allowance grows: its issues are a
    read-only summary (the newest, a link to all), not an inline posting hidden fields per row, and
    users are picked by id in one field, not one field per user; Django answers 400 past
    DATA_UPLOAD_MAX_NUMBER_FIELDS (1000) and saves nothing.
    """

    form = AllowanceForm
    list_display = ["name", "credits", "period", "expires_with_period", "active", "created_at"]
    list_filter = ["active", "period"]
    search_fields = ["name"]
    raw_id_fields = ["users"]
    filter_horizontal = ["groups"]
    fields = ["name", "credits", "period", "expires_with_period", "active", "users", "groups", "issued"]
    actions = ["deactivate", "activate"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.issues.exists():
            return ["period", "issued"]  # the period's help text (AllowanceForm) says what to do instead
        return ["issued"]

    def get_fields(self, request, obj=None):
        return self.fields if obj is not None else [name for name in self.fields if name != "issued"]

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if db_field.name == "users":
            field.help_text = "User ids, separated by commas; the magnifier picks them from the user list."
        return field

    @admin.display(description="Issued")
    def issued(self, allowance):
        page = allowance_issues_page(allowance_id=allowance.pk, limit=ISSUES_ON_ALLOWANCE_PAGE)
        if not page.count:
            return "Not issued yet."
        link = format_html(
            '<a id="allowance-issues-all" href="{}?allowance__id__exact={}">All {} issues of this allowance</a>',
            reverse("admin:billing_allowanceissue_changelist"),
            allowance.pk,
            page.count,
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    issue.user,
                    issue.period_start.isoformat(),
                    format_money(issue.transaction.amount),
                    issue.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                )
                for issue in page.issues
            ),
        )
        return format_html(
            '<p>{} lot(s) issued; the newest {}:</p><table id="allowance-issues"><thead><tr><th>User</th>'
            "<th>Period from</th><th>Credits</th><th>When</th></tr></thead><tbody>{}</tbody></table><p>{}</p>",
            page.count,
            len(page.issues),
            rows,
            link,
        )

    @admin.action(description="Deactivate selected allowances", permissions=["change"])
    def deactivate(self, request, queryset):
        return self._set_active(request, queryset, active=False)

    @admin.action(description="Activate selected allowances", permissions=["change"])
    def activate(self, request, queryset):
        return self._set_active(request, queryset, active=True)

    def _set_active(self, request, queryset, *, active: bool):
        """The selected allowances switched by the service, each change logged on its allowance."""
        selected = list(queryset.values_list("pk", flat=True))
        changed = set_allowances_active(allowance_ids=selected, active=active)
        done, state = ("Activated", "active") if active else ("Deactivated", "inactive")
        for allowance in changed:
            self.log_change(request, allowance, done)
        if changed:
            self.message_user(request, f"{done} {_allowances_label(len(changed))}.", messages.SUCCESS)
        unchanged = len(selected) - len(changed)
        if unchanged:
            self.message_user(
                request,
                f"{_allowances_label(unchanged)} {'was' if unchanged == 1 else 'were'} {state} already; "
                "nothing changed there.",
                messages.WARNING if not changed else messages.INFO,
            )
        return None


@admin.register(AllowanceIssue)
class AllowanceIssueAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every allowance issued: to whom, for which period, the ledger row; read-only, written by the job.

    Readable by whoever may read allowances (no group holds this model's own permission).
    """

    list_display = ["id", "allowance", "user", "period_start", "credits", "ledger_row", "created_at"]
    list_select_related = ["allowance", "user", "transaction"]
    list_filter = ["allowance"]
    search_fields = ["user__username", "user__email"]
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = ["allowance", "user", "period_start", "credits", "ledger_row", "created_at"]
    readonly_fields = fields

    def has_view_permission(self, request, obj=None):
        return (
            super().has_view_permission(request, obj)
            or request.user.has_perm("billing.view_allowance")
            or request.user.has_perm("billing.change_allowance")
        )

    @admin.display(description="credits", ordering="transaction__amount")
    def credits(self, issue):
        return format_money(issue.transaction.amount)

    @admin.display(description="ledger row", ordering="transaction_id")
    def ledger_row(self, issue):
        url = reverse("admin:billing_credittransaction_change", args=[issue.transaction_id])
        return format_html('<a href="{}">#{}</a>', url, issue.transaction_id)


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
