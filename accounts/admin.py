"""Users in the admin: Django's user admin, plus API tokens (revoke), admin-login unlock, and a staff user's money actions."""

from axes.utils import reset as reset_login_failures
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from knox.models import AuthToken

from accounts import services
from accounts.models import User
from billing.selectors import transactions_initiated_by
from core.money import format_money

MONEY_ACTIONS_ON_USER_PAGE = 20


@admin.register(User)
class AccountUserAdmin(UserAdmin):
    actions = ["revoke_api_tokens", "unlock_admin_login"]
    readonly_fields = ["api_tokens", "money_actions"]
    fieldsets = [
        *UserAdmin.fieldsets,
        ("API tokens", {"fields": ["api_tokens"]}),
        ("Money actions initiated by this user", {"fields": ["money_actions"]}),
    ]

    @admin.action(description="Revoke API tokens (log out everywhere)", permissions=["change"])
    def revoke_api_tokens(self, request, queryset):
        total = 0
        for user in queryset:
            count = services.revoke_all_tokens(user=user, revoked_by=request.user)
            self.log_change(request, user, f"Revoked {count} API token(s)")
            total += count
        self.message_user(
            request, f"Revoked {total} API token(s) of {queryset.count()} user(s).", messages.SUCCESS
        )

    @admin.action(description="Unlock admin login (clear failed attempts)", permissions=["change"])
    def unlock_admin_login(self, request, queryset):
        for user in queryset:
            reset_login_failures(username=user.get_username())
            self.log_change(request, user, "Unlocked admin login (cleared failed attempts)")
        self.message_user(request, f"Unlocked admin login for {queryset.count()} user(s).", messages.SUCCESS)

    @admin.display(description="API tokens")
    def api_tokens(self, user):
        tokens = list(
            AuthToken.objects.filter(user=user).order_by("-created").values_list("created", "expiry")
        )
        if not tokens:
            return "None."
        rows = format_html_join(
            "",
            "<li>created {}, expires {}</li>",
            ((created, expiry or "never") for created, expiry in tokens),
        )
        return format_html(
            '<ul id="api-tokens">{}</ul><p class="help">Stored as digests only; revoke with the '
            '"Revoke API tokens" action on the user list.</p>',
            rows,
        )

    @admin.display(description="Ledger rows")
    def money_actions(self, user):
        rows = list(transactions_initiated_by(staff_user=user)[: MONEY_ACTIONS_ON_USER_PAGE + 1])
        if not rows:
            return "None."
        link = format_html(
            '<a id="money-actions-all" href="{}?initiated_by__id__exact={}">All ledger rows initiated by {}</a>',
            reverse("admin:billing_credittransaction_changelist"),
            user.pk,
            user.get_username(),
        )
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    row.created_at,
                    row.get_kind_display(),
                    row.wallet.user,
                    format_money(row.amount),
                    row.reason,
                )
                for row in rows[:MONEY_ACTIONS_ON_USER_PAGE]
            ),
        )
        return format_html(
            '<table id="money-actions"><thead><tr><th>When</th><th>Kind</th><th>Wallet of</th><th>Amount</th>'
            "<th>Reason</th></tr></thead><tbody>{}</tbody></table><p>{}</p>",
            body,
            link,
        )


admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class AuthTokenAdmin(admin.ModelAdmin):
    """API tokens as digests: who, since when, until when. No key is shown; deleting one revokes it."""

    list_display = ["user", "created", "expiry"]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email"]
    fields = ["user", "created", "expiry"]
    readonly_fields = fields
    ordering = ["-created"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
