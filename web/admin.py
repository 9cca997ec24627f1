"""The console's Customers page: find a user by username, email, id, transaction id or key prefix; one page answers support's questions."""

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.template.response import TemplateResponse
from django.urls import reverse

from accounts.customer_selectors import owners_of_key_prefix
from billing.admin import GRANT_PERMISSION, low_balance_marker
from billing.customer_selectors import owner_of_transaction, state_of
from core.admin import ReadOnlyAdminMixin
from core.api_fields import id_from_text
from core.money import format_money
from core.paginators import EstimatedCountPaginator
from web.customer import customer_sections
from web.models import Customer


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: every link that moves money leads to billing's own forms (grant, adjust, refund)."""

    list_display = [
        "username",
        "email",
        "id",
        "balance",
        "available",
        "low_balance",
        "date_joined",
        "last_login",
    ]
    list_select_related = ["wallet"]
    search_fields = ["username", "email", "first_name", "last_name"]
    search_help_text = (
        "Username, email or name (any part), a number (a user id or the id of one of their ledger rows), "
        "or an API key's prefix (cdk_…)."
    )
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("wallet")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        number = id_from_text(term)
        if number is not None:
            # A number names a user or a ledger row (the id support is quoted from a receipt or a log).
            owner = owner_of_transaction(transaction_id=number)
            ids = [number] if owner is None else [number, owner]
            return queryset.filter(Q(pk__in=ids) | Q(username=term)), False
        owners = owners_of_key_prefix(term=term)
        if owners:
            # A key's prefix (or a whole key, pasted from a customer's message) names its owner.
            return queryset.filter(pk__in=owners), False
        return super().get_search_results(request, queryset, term)

    @admin.display(description="balance", ordering="wallet__balance")
    def balance(self, customer):
        return format_money(customer.wallet.balance)

    @admin.display(description="available")
    def available(self, customer):
        return format_money(customer.wallet.available)

    @admin.display(description="low balance")
    def low_balance(self, customer):
        return low_balance_marker(state_of(customer.wallet).low_balance)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The customer page (web.customer's sections), in place of a change form: nothing here is edited."""
        customer = self.get_object(request, unquote(object_id))
        if customer is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, customer):
            raise PermissionDenied
        sections = customer_sections(customer, viewer=request.user)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Customer {customer.get_username()}",
            "subtitle": customer.email,
            "opts": self.opts,
            "customer": customer,
            "original": customer,
            "sections": sections,
            "links": self._links(request, customer),
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/web/customer/page.html", context)

    def _links(self, request, customer) -> list[tuple[str, str, str]]:
        """(id, label, url) of the pages that act on this customer, the ones this staff user may open."""
        user, wallet = request.user, customer.wallet
        links = []
        if user.has_perm("billing.view_wallet") and user.has_perm(GRANT_PERMISSION):
            links.append(("grant", "Grant credits…", reverse("admin:billing_wallet_grant", args=[wallet.pk])))
        if user.has_perm("billing.view_wallet"):
            links.append(("wallet", "Wallet", reverse("admin:billing_wallet_change", args=[wallet.pk])))
        if user.has_perm("billing.view_credittransaction"):
            url = reverse("admin:billing_credittransaction_changelist") + f"?wallet={wallet.pk}"
            links.append(("ledger", "Full ledger", url))
        if user.has_perm("billing.view_llmcallevent"):
            url = reverse("admin:billing_llmcallevent_changelist") + f"?user__id__exact={customer.pk}"
            links.append(("calls", "Model calls", url))
        if user.has_perm("sessions_app.view_chatsession"):
            url = reverse("admin:sessions_app_chatsession_changelist") + f"?owner__id__exact={customer.pk}"
            links.append(("sessions", "Chat sessions", url))
        if user.has_perm("accounts.view_user"):
            links.append(("account", "Account", reverse("admin:accounts_user_change", args=[customer.pk])))
        return links
