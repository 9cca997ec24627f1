"""Users in the admin: Django's user admin, plus API tokens (revoke), admin-login unlock, a staff user's money actions, and API keys."""

from axes.utils import reset as reset_login_failures
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from knox.models import AuthToken

from accounts import keys, services
from accounts.models import ApiKey, User
from billing.selectors import calls_of_limit, limit_spending, transactions_initiated_by
from core.admin import FrozenSelectionMixin, confirm_action
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
                    row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
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
class ApiKeyAdmin(FrozenSelectionMixin, admin.ModelAdmin):
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
    change_form_template = "admin/accounts/apikey/change_form.html"

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

    @admin.action(description="Revoke the selected keys (their next call is 401)…", permissions=["change"])
    def revoke(self, request, queryset):
        """First a page that names the keys and asks; then, confirmed, each live one revoked and logged."""
        live = list(queryset.filter(revoked_at__isnull=True).select_related("user"))
        if "apply" not in request.POST:
            if not live:
                self.message_user(request, "The selected keys are revoked already.", messages.WARNING)
                return None
            return self._confirm_revoke(
                request,
                live,
                action="revoke",
                back_url=reverse("admin:accounts_apikey_changelist"),
            )
        if not live:  # confirmed in a second tab after the first had revoked them
            self.message_user(
                request, "The selected keys were revoked already; nothing more was done.", messages.WARNING
            )
            return None
        for key in live:
            self._revoke(request, key)
        self.message_user(request, f"Revoked {len(live)} API key(s).", messages.SUCCESS)
        return None

    def get_urls(self):
        revoke = path(
            "<path:object_id>/revoke/",
            self.admin_site.admin_view(self.revoke_view),
            name="accounts_apikey_revoke",
        )
        return [revoke, *super().get_urls()]

    def revoke_view(self, request, object_id):
        """One key's "Revoke this key…": asks on GET, revokes on the confirming POST."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        key = self.get_object(request, unquote(object_id))
        if key is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        page = reverse("admin:accounts_apikey_change", args=[key.pk])
        if key.revoked_at is not None:
            self.message_user(request, f"The key {key.prefix} is revoked already.", messages.WARNING)
            return HttpResponseRedirect(page)
        if request.method == "POST" and "apply" in request.POST:
            self._revoke(request, key)
            self.message_user(
                request, f"Revoked the key {key.prefix}: its next call is 401.", messages.SUCCESS
            )
            return HttpResponseRedirect(page)
        return self._confirm_revoke(request, [key], action="", back_url=page)

    def _revoke(self, request, key) -> None:
        keys.revoke_api_key(key=key, revoked_by=request.user)
        self.log_change(request, key, "Revoked")

    def _confirm_revoke(self, request, live, *, action: str, back_url: str):
        count = len(live)
        return confirm_action(
            self,
            request,
            title=f"Revoke {count} API key{'s' if count != 1 else ''}?",
            intro=(
                "Revoking a key is at once and for good: its next call is 401, and whatever uses it (a "
                "customer's script, a chat app) stops working until its owner makes a new key. Its calls "
                "stay attributed to it."
            ),
            headers=["Key", "Owner", "Prefix", "Last used"],
            rows=[[k.name, k.user.get_username(), k.prefix, k.last_used_at or "never"] for k in live],
            selected=[key.pk for key in live],
            submit_label=f"Revoke {count} key{'s' if count != 1 else ''}",
            back_url=back_url,
            action=action,
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # Every field is read-only: no Save buttons; a live key offers "Revoke this key…" instead.
        context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        if obj is not None and obj.revoked_at is None and self.has_change_permission(request, obj):
            context["revoke_url"] = reverse("admin:accounts_apikey_revoke", args=[obj.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)
