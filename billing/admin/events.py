"""The metered calls page: every LLM call event as recorded, read-only."""

from django.contrib import admin

from billing.models import LLMCallEvent, ModelPrice
from core.admin import ReadOnlyAdminMixin
from core.paginators import EstimatedCountPaginator


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
