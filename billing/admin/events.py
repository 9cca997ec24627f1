"""The metered calls page: every LLM call event as recorded, read-only, with what it was made for."""

from collections.abc import Callable

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from billing.models import LLMCallEvent, ModelPrice
from core.admin import ReadOnlyAdminMixin, ReplicaChangelistMixin
from core.paginators import EstimatedCountPaginator

# What a call was made for, as the apps above billing know it (sessions_app adds the turn): each hook
# takes the event and answers (label, admin url) or None. Billing imports none of those apps.
CALL_CONTEXT_LINKS: list[Callable[[LLMCallEvent], tuple[str, str] | None]] = []


def call_context(event: LLMCallEvent | None) -> str:
    """Links to what the call was made for (its turn, ...), or "" when no hook knows it."""
    if event is None:
        return ""
    links = [link for hook in CALL_CONTEXT_LINKS if (link := hook(event)) is not None]
    return format_html_join(
        " · ", '<a href="{}" class="call-context">{}</a>', ((url, label) for label, url in links)
    )


def call_link(call_id: int | None) -> str:
    """A link to a call's page from the id on a row (a debit, a hold): no query, whatever the rows listed."""
    if call_id is None:
        return ""
    url = reverse("admin:billing_llmcallevent_change", args=[call_id])
    return format_html('<a href="{}" class="call-link">call {}</a>', url, call_id)


class PricedModelFilter(admin.SimpleListFilter):
    """Models named by price rows: a bounded list, unlike SELECT DISTINCT over every event."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        return [(name, name) for name in ModelPrice.objects.order_by("model").values_list("model", flat=True)]

    def queryset(self, request, queryset):
        return queryset.filter(model=self.value()) if self.value() else queryset


@admin.register(LLMCallEvent)
class LLMCallEventAdmin(ReplicaChangelistMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
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
    readonly_fields = ["made_for"]

    @admin.display(description="made for")
    def made_for(self, event):
        return call_context(event) or format_html("{}", "nothing recorded (not a turn's call)")
