"""The append-only ledger page: searchable, filterable, refundable through a service, never editable."""

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.text import Truncator

from billing import services
from billing.admin.actions import GRANT_PERMISSION, ledger_action
from billing.admin.events import call_context, call_link
from billing.forms import RefundForm
from billing.models import CreditTransaction
from core.admin import FrozenSelectionMixin, ReadOnlyAdminMixin, ReplicaChangelistMixin
from core.money import format_money
from core.paginators import EstimatedCountPaginator


@admin.register(CreditTransaction)
class CreditTransactionAdmin(
    FrozenSelectionMixin, ReplicaChangelistMixin, ReadOnlyAdminMixin, admin.ModelAdmin
):
    """The append-only ledger: searchable, filterable, exportable, never editable."""

    list_display = [
        "id",
        "created_at",
        "user",
        "kind",
        "amount",
        "balance_after",
        "initiator",
        "refund_of",
        "call",
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
    # Rendering a row costs the admin ~0.5 ms (12 cells, a checkbox, links): 50 rows keep the page
    # well under 300 ms on a busy machine, where Django's 100 took ~100 ms at p50 (docs/performance.md).
    list_per_page = 50
    readonly_fields = ["behind_it"]
    # "Export selected to CSV" is added by reporting/admin.py: CSV exports are reporting's, and
    # billing never imports reporting.

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("wallet__user", "initiated_by")

    @admin.display(description="user", ordering="wallet__user__username")
    def user(self, row):
        return row.wallet.user

    @admin.display(description="call")
    def call(self, row):
        # The id is on the row: a link per debit costs no query (its page then names the turn).
        return call_link(row.llm_call_id)

    @admin.display(description="behind it")
    def behind_it(self, row):
        """A debit's call event and what the call was made for (its turn): support's "why was I charged?"."""
        if row.llm_call_id is None:
            return "nothing (not a debit of a call)"
        call = call_link(row.llm_call_id)
        context = call_context(row.llm_call)
        return format_html("{} · {}", call, context) if context else call

    @admin.display(description="reason")
    def short_reason(self, row):
        return Truncator(row.reason).chars(40)

    @admin.display(description="initiated by", ordering="initiated_by__username")
    def initiator(self, row):
        # A debit, an expiry or an allowance moves credits with nobody's hand on it: the system's, as
        # the customer page says, not Django's "-" for an empty value.
        return row.initiated_by.get_username() if row.initiated_by_id else "system"

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
        return refund_debits(
            self,
            request,
            rows,
            action="refund",
            title="Refund debits",
            intro="Each debit below is refunded (all that is left of it, or the amount) as a new refund row.",
        )


def refund_debits(
    model_admin, request, debits, *, action: str, title: str, intro: str, what: str = "", back_url: str = ""
):
    """The refund form over `debits` (billing's RefundForm and refund service), as ledger_action runs it.

    The ledger's "Refund" action and a turn's "Refund this turn…" both use it; `what` names where the
    debits came from in each one's history line (e.g. "turn 12, "); `back_url`, where Cancel goes.
    """
    left = services.refundable_of(debits=debits)  # one query, however many debits are listed
    return ledger_action(
        model_admin,
        request,
        form_class=RefundForm,
        targets=debits,
        action=action,
        title=title,
        intro=intro,
        submit_label="Refund",
        back_url=back_url,
        headers=["Debit", "User", "Amount", "Left to refund", "Reason"],
        cells=lambda d: [
            d.pk,
            d.wallet.user.get_username(),
            format_money(d.amount),
            format_money(left[d.pk]),
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
            f"Refunded {format_money(row.amount)} credits of debit {d.pk} ({what}row {row.pk}): {row.reason}",
        ),
    )
