"""The wallets page: balances and holds at a glance, grants, adjustments and enforcement overrides."""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from billing import services
from billing.admin.actions import GRANT_PERMISSION, ledger_action, wallets_label
from billing.forms import AdjustForm, GrantCreditsForm
from billing.lot_selectors import wallet_lots
from billing.models import Wallet
from billing.selectors import is_low_balance, last_wallet_event, low_balance_threshold, transactions_for_user
from core.admin import FrozenSelectionMixin, ReadOnlyAdminMixin, action_selection, confirm_action
from core.errors import DomainError
from core.money import format_money
from core.paginators import EstimatedCountPaginator

ENFORCEMENT_PERMISSION = "billing.set_enforcement"  # Wallet.Meta.permissions
LEDGER_ROWS_ON_WALLET_PAGE = 50
LOTS_ON_WALLET_PAGE = 50


class LowBalanceFilter(admin.SimpleListFilter):
    title = "low balance"
    parameter_name = "low_balance"

    def lookups(self, request, model_admin):
        return [("yes", "Low balance"), ("no", "Above threshold")]

    def queryset(self, request, queryset):
        # The same rule as billing.selectors.is_low_balance, expressed as SQL so it can filter.
        threshold = low_balance_threshold()
        if self.value() == "yes":
            return queryset.filter(balance__lte=threshold)
        if self.value() == "no":
            return queryset.filter(balance__gt=threshold)
        return queryset


# What each setting of a wallet's enforcement does, said on the page that asks before changing it.
ENFORCEMENT_MEANS = {
    Wallet.Enforcement.DEFAULT: "These wallets follow CREDIT_ENFORCEMENT_ENABLED again: refused (402) when "
    "empty where it is on, let through and flagged where it is off.",
    Wallet.Enforcement.EXEMPT: "These wallets are never refused for want of credits, whatever "
    "CREDIT_ENFORCEMENT_ENABLED says: their turns and calls go on into debt (spending caps still apply).",
    Wallet.Enforcement.ENFORCED: "These wallets are refused (402) once nothing is available, whatever "
    "CREDIT_ENFORCEMENT_ENABLED says: a customer with an empty wallet stops at their next turn or call.",
}


def low_balance_marker(low: bool) -> str:
    """A wallet's low-balance flag for a list: a warning marker rather than Django's boolean icons,
    whose green tick would read as "fine" for a wallet that is low."""
    if low:
        return format_html('<strong class="low-balance" style="color: var(--error-fg)">{}</strong>', "▼ low")
    return format_html('<span style="color: var(--body-quiet-color)">{}</span>', "ok")


@admin.register(Wallet)
class WalletAdmin(FrozenSelectionMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Wallets are opened with their user and moved only by services: staff read them and grant."""

    list_display = ["user", "email", "balance_display", "held_display", "low_balance", "updated_at"]
    list_select_related = ["user"]
    list_filter = [LowBalanceFilter]
    search_fields = ["user__username", "user__email"]
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator  # no full COUNT(*) of a big table per page view
    fields = [
        "user",
        "email",
        "balance_display",
        "held_display",
        "available_display",
        "low_balance",
        "last_crossing",
        "enforcement",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    actions = [
        "grant_credits",
        "adjust_credits",
        "enforcement_default",
        "enforcement_exempt",
        "enforcement_enforced",
    ]
    change_form_template = "admin/billing/wallet/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    @admin.display(description="email", ordering="user__email")
    def email(self, wallet):
        return wallet.user.email

    @admin.display(description="balance", ordering="balance")
    def balance_display(self, wallet):
        return format_money(wallet.balance)

    @admin.display(description="held by turns in flight", ordering="held")
    def held_display(self, wallet):
        return format_money(wallet.held)

    @admin.display(description="available (balance - held)")
    def available_display(self, wallet):
        return format_money(wallet.available)

    @admin.display(description="low balance")
    def low_balance(self, wallet):
        return low_balance_marker(is_low_balance(wallet.balance))

    @admin.display(description="last crossing")
    def last_crossing(self, wallet):
        event = last_wallet_event(wallet_id=wallet.pk)
        if event is None:
            return "none"
        url = reverse("admin:billing_walletevent_change", args=[event.pk])
        return format_html(
            '<a href="{}">{}</a> at {} (balance {})',
            url,
            event.type,
            event.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            format_money(event.balance),
        )

    def has_grant_permission(self, request):
        return request.user.has_perm(GRANT_PERMISSION)

    def has_set_enforcement_permission(self, request):
        return request.user.has_perm(ENFORCEMENT_PERMISSION)

    @admin.action(description="Enforcement: follow the setting (default)…", permissions=["set_enforcement"])
    def enforcement_default(self, request, queryset):
        return self._set_enforcement(request, queryset, Wallet.Enforcement.DEFAULT)

    @admin.action(description="Enforcement: exempt (never refuse)…", permissions=["set_enforcement"])
    def enforcement_exempt(self, request, queryset):
        return self._set_enforcement(request, queryset, Wallet.Enforcement.EXEMPT)

    @admin.action(description="Enforcement: enforced (refuse when empty)…", permissions=["set_enforcement"])
    def enforcement_enforced(self, request, queryset):
        return self._set_enforcement(request, queryset, Wallet.Enforcement.ENFORCED)

    def _set_enforcement(self, request, queryset, enforcement: str):
        """The rollout switch per wallet, through the service that logs who changed it; asks first
        (the confirming form posts the action again: `enforcement_<enforcement>`, named after it)."""
        wallets = list(queryset.select_related("user").order_by("id"))
        if "apply" not in request.POST:
            return confirm_action(
                self,
                request,
                title=f"Set enforcement to {enforcement} on {wallets_label(len(wallets))}?",
                intro=ENFORCEMENT_MEANS[enforcement],
                headers=["User", "Balance", "Enforcement now"],
                rows=[[w.user.get_username(), format_money(w.balance), w.enforcement] for w in wallets],
                selected=[wallet.pk for wallet in wallets],
                submit_label=f"Set {enforcement}",
                back_url=reverse("admin:billing_wallet_changelist"),
                action=f"enforcement_{enforcement}",
            )
        changed = 0
        for wallet in wallets:
            if wallet.enforcement == enforcement:
                continue
            services.set_enforcement(user=wallet.user, enforcement=enforcement, changed_by=request.user)
            self.log_change(request, wallet, f"Enforcement set to {enforcement} (was {wallet.enforcement})")
            changed += 1
        if changed:
            self.message_user(
                request, f"Enforcement set to {enforcement} on {wallets_label(changed)}.", messages.SUCCESS
            )
        if changed < len(wallets):
            self.message_user(
                request,
                f"Enforcement was {enforcement} already on {wallets_label(len(wallets) - changed)}; "
                "nothing changed there.",
                messages.WARNING if not changed else messages.INFO,
            )
        return None

    def get_urls(self):
        grant = path(
            "<path:object_id>/grant/",
            self.admin_site.admin_view(self.grant_view),
            name="billing_wallet_grant",
        )
        return [grant, *super().get_urls()]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(
                ledger=transactions_for_user(user=obj.user)[:LEDGER_ROWS_ON_WALLET_PAGE],
                lots=wallet_lots(wallet_id=obj.pk)[:LOTS_ON_WALLET_PAGE],
                lots_limit=LOTS_ON_WALLET_PAGE,
                debt=obj.debt,
                ledger_limit=LEDGER_ROWS_ON_WALLET_PAGE,
                ledger_url=reverse("admin:billing_credittransaction_changelist") + f"?wallet={obj.pk}",
                can_grant=self.has_grant_permission(request),
                grant_url=reverse("admin:billing_wallet_grant", args=[obj.pk]),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.action(description="Grant credits…", permissions=["grant"])
    def grant_credits(self, request, queryset):
        """Intermediate page: the first POST (from the changelist) shows the form, the second grants."""
        wallets = list(queryset.select_related("user").order_by("user__username"))
        if "apply" in request.POST:
            form = GrantCreditsForm(request.POST)
            if form.is_valid() and self._grant(request, form, wallets):
                return None  # back to the changelist, which shows the message
        else:
            form = GrantCreditsForm()
        return self._grant_page(request, form, wallets, from_action=True)

    def grant_view(self, request, object_id):
        """The same grant form for one wallet, linked from its change page."""
        # The page shows the wallet, so granting needs the right to view it as well.
        if not (self.has_grant_permission(request) and self.has_view_permission(request)):
            raise PermissionDenied
        wallet = self.get_object(request, unquote(object_id))
        if wallet is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if request.method == "POST":
            form = GrantCreditsForm(request.POST)
            if form.is_valid() and self._grant(request, form, [wallet]):
                return HttpResponseRedirect(reverse("admin:billing_wallet_change", args=[wallet.pk]))
        else:
            form = GrantCreditsForm()
        return self._grant_page(request, form, [wallet], from_action=False)

    def _grant(self, request, form, wallets) -> bool:
        """Grant to every wallet or to none; report it in a message, or put the refusal on the form."""
        amount, reason = form.cleaned_data["amount"], form.cleaned_data["reason"]
        try:
            with transaction.atomic():
                rows = [
                    services.grant(
                        user=wallet.user,
                        amount=amount,
                        reason=reason,
                        initiated_by=request.user,
                        idempotency_key=form.idempotency_key,
                        **form.lot_terms,
                    )
                    for wallet in wallets
                ]
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            return False
        new = [(wallet, row) for wallet, row in zip(wallets, rows, strict=True) if not row.replayed]
        for wallet, row in new:
            self.log_change(request, wallet, f"Granted {format_money(row.amount)} credits: {row.reason}")
        if new:
            self.message_user(
                request,
                f"Granted {format_money(amount)} credits to {wallets_label(len(new))}.",
                messages.SUCCESS,
            )
        if len(new) < len(rows):
            self.message_user(
                request,
                f"This form was already submitted for {wallets_label(len(rows) - len(new))}; "
                "nothing more was granted there.",
                messages.WARNING,
            )
        return True

    def _grant_page(self, request, form, wallets, *, from_action: bool):
        context = {
            **self.admin_site.each_context(request),
            "title": "Grant credits",
            "subtitle": wallets_label(len(wallets)),
            "opts": self.opts,
            "form": form,
            "wallets": wallets,
            "from_action": from_action,
            **action_selection(request, [wallet.pk for wallet in wallets]),
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/billing/wallet/grant.html", context)

    @admin.action(description="Adjust…", permissions=["grant"])
    def adjust_credits(self, request, queryset):
        """Intermediate page: a signed correction of each selected wallet, through services.adjust."""
        wallets = list(queryset.select_related("user").order_by("user__username"))
        return ledger_action(
            self,
            request,
            form_class=AdjustForm,
            targets=wallets,
            action="adjust_credits",
            title="Adjust wallets",
            intro="The signed amount is added to each wallet below as an adjustment ledger row.",
            submit_label="Adjust",
            headers=["User", "Email", "Balance now"],
            cells=lambda w: [w.user.get_username(), w.user.email, format_money(w.balance)],
            write=lambda w, form: services.adjust(
                user=w.user,
                amount=form.cleaned_data["amount"],
                reason=form.cleaned_data["reason"],
                initiated_by=request.user,
                idempotency_key=form.idempotency_key(w.pk),
            ),
            logged_on=lambda w, row: (w, f"Adjusted by {format_money(row.amount)} credits: {row.reason}"),
        )
