"""The support console for billing: wallets and grants, the read-only ledger and usage events, prices."""

from decimal import Decimal

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from billing import pricing, services
from billing.forms import AdjustForm, GrantCreditsForm, ModelPriceForm, RefundForm
from billing.models import CreditHold, CreditTransaction, LLMCallEvent, ModelPrice, Wallet
from billing.selectors import is_low_balance, last_wallet_event, transactions_for_user
from core.admin import ReadOnlyAdminMixin
from core.errors import DomainError
from core.money import format_money
from core.paginators import EstimatedCountPaginator

GRANT_PERMISSION = "billing.grant_credits"  # created by billing/migrations/0004_support_group.py
ENFORCEMENT_PERMISSION = "billing.set_enforcement"  # Wallet.Meta.permissions
LEDGER_ROWS_ON_WALLET_PAGE = 50


class LowBalanceFilter(admin.SimpleListFilter):
    title = "low balance"
    parameter_name = "low_balance"

    def lookups(self, request, model_admin):
        return [("yes", "Low balance"), ("no", "Above threshold")]

    def queryset(self, request, queryset):
        # The same rule as billing.selectors.is_low_balance, expressed as SQL so it can filter.
        threshold = Decimal(settings.LOW_BALANCE_THRESHOLD)
        if self.value() == "yes":
            return queryset.filter(balance__lte=threshold)
        if self.value() == "no":
            return queryset.filter(balance__gt=threshold)
        return queryset


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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
        # A warning marker rather than Django's boolean icons, whose green tick would read as "fine".
        if is_low_balance(wallet.balance):
            return format_html(
                '<strong class="low-balance" style="color: var(--error-fg)">{}</strong>', "▼ low"
            )
        return format_html('<span style="color: var(--body-quiet-color)">{}</span>', "ok")

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

    @admin.action(description="Enforcement: follow the setting (default)", permissions=["set_enforcement"])
    def enforcement_default(self, request, queryset):
        self._set_enforcement(request, queryset, Wallet.Enforcement.DEFAULT)

    @admin.action(description="Enforcement: exempt (never refuse)", permissions=["set_enforcement"])
    def enforcement_exempt(self, request, queryset):
        self._set_enforcement(request, queryset, Wallet.Enforcement.EXEMPT)

    @admin.action(description="Enforcement: enforced (refuse when empty)", permissions=["set_enforcement"])
    def enforcement_enforced(self, request, queryset):
        self._set_enforcement(request, queryset, Wallet.Enforcement.ENFORCED)

    def _set_enforcement(self, request, queryset, enforcement: str):
        """The rollout switch per wallet, through the service that logs who changed it."""
        changed = 0
        for wallet in queryset.select_related("user"):
            if wallet.enforcement == enforcement:
                continue
            services.set_enforcement(user=wallet.user, enforcement=enforcement, changed_by=request.user)
            self.log_change(request, wallet, f"Enforcement set to {enforcement} (was {wallet.enforcement})")
            changed += 1
        self.message_user(
            request, f"Enforcement set to {enforcement} on {_wallets(changed)}.", messages.SUCCESS
        )

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
                f"Granted {format_money(amount)} credits to {_wallets(len(new))}.",
                messages.SUCCESS,
            )
        if len(new) < len(rows):
            self.message_user(
                request,
                f"This form was already submitted for {_wallets(len(rows) - len(new))}; "
                "nothing more was granted there.",
                messages.WARNING,
            )
        return True

    def _grant_page(self, request, form, wallets, *, from_action: bool):
        context = {
            **self.admin_site.each_context(request),
            "title": "Grant credits",
            "subtitle": _wallets(len(wallets)),
            "opts": self.opts,
            "form": form,
            "wallets": wallets,
            "from_action": from_action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
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


def ledger_action(
    model_admin,
    request,
    *,
    form_class,
    targets,
    action,
    title,
    intro,
    submit_label,
    headers,
    cells,
    write,
    logged_on,
):
    """An action's intermediate form: first POST shows it, the second writes every row or none.

    Each written row is recorded in Django's LogEntry (`logged_on(target, row)` names the object and
    the message); replays of a double-submitted form write and log nothing new.
    """
    form = form_class(request.POST) if "apply" in request.POST else form_class()
    if "apply" in request.POST and form.is_valid():
        try:
            with transaction.atomic():
                rows = [write(target, form) for target in targets]
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            new = [(target, row) for target, row in zip(targets, rows, strict=True) if not row.replayed]
            for target, row in new:
                model_admin.log_change(request, *logged_on(target, row))
            if new:
                model_admin.message_user(
                    request, f"{submit_label}: {len(new)} ledger row(s) written.", messages.SUCCESS
                )
            if len(new) < len(rows):
                model_admin.message_user(
                    request, "This form was already submitted; nothing more was written.", messages.WARNING
                )
            return None  # back to the changelist, which shows the message
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.opts,
        "form": form,
        "intro": intro,
        "headers": headers,
        "rows": [cells(target) for target in targets],
        "selected": [target.pk for target in targets],
        "action": action,
        "submit_label": submit_label,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": model_admin.media + form.media,
    }
    return TemplateResponse(request, "admin/billing/ledger_action.html", context)


def _wallets(count: int) -> str:
    return f"{count} wallet" if count == 1 else f"{count} wallets"


@admin.register(CreditTransaction)
class CreditTransactionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The append-only ledger: searchable, filterable, exportable, never editable."""

    list_display = [
        "id",
        "created_at",
        "user",
        "kind",
        "amount",
        "balance_after",
        "initiated_by",
        "refund_of",
        "short_reason",
    ]
    list_display_links = ["id", "created_at"]
    list_select_related = ["wallet__user", "initiated_by"]
    list_filter = ["kind", "created_at", ("initiated_by", admin.EmptyFieldListFilter)]
    actions = ["refund"]
    search_fields = ["wallet__user__username", "wallet__user__email"]
    # -id follows the (wallet, -id) index and insertion order; counting a big ledger is not worth it.
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator  # no full COUNT(*) of a big table per page view
    # "Export selected to CSV" is added by reporting/admin.py: CSV exports are reporting's, and
    # billing never imports reporting.

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("wallet__user", "initiated_by")

    @admin.display(description="user", ordering="wallet__user__username")
    def user(self, row):
        return row.wallet.user

    @admin.display(description="reason")
    def short_reason(self, row):
        return Truncator(row.reason).chars(40)

    def has_refund_permission(self, request):
        return request.user.has_perm(GRANT_PERMISSION)

    @admin.action(description="Refund…", permissions=["refund"])
    def refund(self, request, queryset):
        """Intermediate page: refund each selected debit (all that is left, or the amount), via services.refund."""
        rows = list(queryset.select_related("wallet__user").order_by("id"))
        not_debits = [row.pk for row in rows if row.kind != CreditTransaction.Kind.DEBIT]
        if not_debits:
            self.message_user(
                request,
                f"Only debits can be refunded; deselect {', '.join(map(str, not_debits))} "
                "(to correct another kind of row, adjust its wallet).",
                messages.ERROR,
            )
            return None
        return ledger_action(
            self,
            request,
            form_class=RefundForm,
            targets=rows,
            action="refund",
            title="Refund debits",
            intro="Each debit below is refunded (all that is left of it, or the amount) as a new refund row.",
            submit_label="Refund",
            headers=["Debit", "User", "Amount", "Left to refund", "Reason"],
            cells=lambda d: [
                d.pk,
                d.wallet.user.get_username(),
                format_money(d.amount),
                format_money(services.refundable(debit=d)),
                d.reason,
            ],
            write=lambda d, form: services.refund(
                debit=d,
                amount=form.cleaned_data["amount"],
                reason=form.cleaned_data["reason"],
                initiated_by=request.user,
                idempotency_key=form.idempotency_key(d.pk),
            ),
            logged_on=lambda d, row: (
                d,
                f"Refunded {format_money(row.amount)} credits of debit {d.pk} (row {row.pk}): {row.reason}",
            ),
        )


class PricedModelFilter(admin.SimpleListFilter):
    """Models named by price rows: a bounded list, unlike SELECT DISTINCT over every event."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        return [(name, name) for name in ModelPrice.objects.order_by("model").values_list("model", flat=True)]

    def queryset(self, request, queryset):
        return queryset.filter(model=self.value()) if self.value() else queryset


@admin.register(LLMCallEvent)
class LLMCallEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Metered model calls, as recorded: read-only."""

    list_display = [
        "id",
        "created_at",
        "user",
        "model",
        "provider",
        "purpose",
        "status",
        "used_fallback",
        "input_tokens",
        "output_tokens",
        "cost",
        "latency_ms",
    ]
    list_display_links = ["id", "created_at"]
    list_select_related = ["user"]
    list_filter = [PricedModelFilter, "purpose", "status", "used_fallback", "created_at"]
    search_fields = ["user__username", "user__email"]
    ordering = ["-created_at"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator  # no full COUNT(*) of a big table per page view


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Per-model prices; events keep the price they were charged at, so edits never re-price history."""

    form = ModelPriceForm
    list_display = ["model", "input_price_per_1k", "output_price_per_1k", "active", "updated_at"]
    list_filter = ["active"]
    search_fields = ["model"]
    readonly_fields = ["created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        # Through billing.pricing, like the API: the same checks, the same lock and the same log line.
        prices = {
            name: form.cleaned_data[name] for name in ("input_price_per_1k", "output_price_per_1k", "active")
        }
        if change:
            saved = pricing.update_price(price=obj, **prices)
        else:
            saved = pricing.create_price(model=form.cleaned_data["model"], **prices)
        obj.pk, obj.created_at, obj.updated_at = saved.pk, saved.created_at, saved.updated_at

    def has_delete_permission(self, request, obj=None):
        # Turns look a price up by model name; retire a model by unticking "active" instead.
        return False

    def get_readonly_fields(self, request, obj=None):
        # Renaming a priced model would orphan the sessions that name it.
        if obj is not None:
            return ["model", *self.readonly_fields]
        return self.readonly_fields


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
        "llm_call",
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
