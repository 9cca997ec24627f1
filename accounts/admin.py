"""Users in the admin: Django's user admin, plus API tokens (revoke), admin-login unlock, a staff user's money actions, and API keys."""

from axes.utils import reset as reset_login_failures
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from knox.models import AuthToken

from accounts import keys, services
from accounts.models import ApiKey, User
from billing.selectors import calls_of_limit, limit_spending, transactions_initiated_by
from core.money import format_money

MONEY_ACTIONS_ON_USER_PAGE = 20
KEY_CALLS_ON_PAGE = 50


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


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Every user's API keys: owner, prefix, limit, usage this period, last use; revoke; a key's calls on its page."""

    list_display = ["name", "user", "prefix", "limit", "usage_this_period", "last_used_at", "revoked_at"]
    list_select_related = ["user", "spend_limit"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "user__username", "user__email"]
    ordering = ["-id"]
    show_full_result_count = False
    actions = ["revoke"]
    fields = [
        "name",
        "user",
        "prefix",
        "limit",
        "usage_this_period",
        "expires_at",
        "created_at",
        "last_used_at",
        "revoked_at",
        "calls",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # a key's secret is shown to its owner once, so only its owner creates one

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the key's calls stay attributed to it

    @admin.display(description="limit")
    def limit(self, key):
        spend_limit = key.spend_limit
        if spend_limit.amount is None:
            return "none"
        reset = keys.RESET_NAMES.get(spend_limit.period, "never resets")
        return f"{format_money(spend_limit.amount)} ({reset})"

    @admin.display(description="usage this period")
    def usage_this_period(self, key):
        return format_money(limit_spending(spend_limit=key.spend_limit))

    @admin.display(description=f"calls (newest {KEY_CALLS_ON_PAGE})")
    def calls(self, key):
        rows = calls_of_limit(spend_limit_id=key.spend_limit_id)[:KEY_CALLS_ON_PAGE]
        return (
            format_html_join(
                "\n",
                '<div><a href="{}">#{}</a> {} {} {} in / {} out, cost {} {}</div>',
                (
                    (
                        reverse("admin:billing_llmcallevent_change", args=[call.pk]),
                        call.pk,
                        call.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                        call.model,
                        call.input_tokens,
                        call.output_tokens,
                        format_money(call.cost),
                        f"(user {call.end_user})" if call.end_user else "",
                    )
                    for call in rows
                ),
            )
            or "none yet"
        )

    @admin.action(description="Revoke the selected keys (their next call is 401)", permissions=["change"])
    def revoke(self, request, queryset):
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            keys.revoke_api_key(key=key, revoked_by=request.user)
            self.log_change(request, key, "Revoked")
            count += 1
        self.message_user(request, f"Revoked {count} API key(s).", messages.SUCCESS)
