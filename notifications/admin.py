"""The operators' view of wallet events and their deliveries: read-only, with a "Redeliver" action."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from billing.models import WalletEvent
from core.admin import ReadOnlyAdminMixin as ReadOnly
from notifications import services
from notifications.models import Delivery

REDELIVER_PERMISSION = "notifications.change_delivery"


class DeliveryInline(ReadOnly, admin.TabularInline):
    model = Delivery
    fields = ["channel", "state", "attempts", "last_error", "last_attempt_at", "delivered_at"]
    readonly_fields = fields
    extra = 0


def _redeliver(modeladmin, request, events):
    job_ids = [services.redeliver(event=event, initiated_by=request.user) for event in events]
    modeladmin.message_user(
        request,
        f"Redelivery queued for {len(job_ids)} event{'s' if len(job_ids) != 1 else ''}.",
        messages.SUCCESS,
    )


@admin.register(WalletEvent)
class WalletEventAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["id", "type", "user", "balance", "threshold", "created_at", "delivery_states"]
    list_filter = ["type"]
    list_select_related = ["wallet__user"]
    search_fields = ["=uuid", "wallet__user__username", "wallet__user__email"]
    ordering = ["-id"]
    show_full_result_count = False
    fields = ["uuid", "type", "wallet", "user", "balance_before", "balance", "threshold", "created_at"]
    readonly_fields = fields
    inlines = [DeliveryInline]
    actions = ["redeliver"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("deliveries")

    @admin.display(description="user", ordering="wallet__user__username")
    def user(self, event):
        return event.wallet.user

    @admin.display(description="deliveries")
    def delivery_states(self, event):
        return ", ".join(f"{d.channel}: {d.state}" for d in event.deliveries.all()) or "queued"

    def has_redeliver_permission(self, request):
        return request.user.has_perm(REDELIVER_PERMISSION)

    @admin.action(description="Redeliver (webhook and email again)", permissions=["redeliver"])
    def redeliver(self, request, queryset):
        _redeliver(self, request, queryset.select_related("wallet__user"))


@admin.register(Delivery)
class DeliveryAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["id", "event_link", "channel", "state", "attempts", "last_error", "last_attempt_at"]
    list_filter = ["state", "channel"]
    list_select_related = ["event"]
    ordering = ["-id"]
    show_full_result_count = False
    fields = ["event_link", "channel", "state", "attempts", "last_error", "last_attempt_at", "delivered_at"]
    readonly_fields = fields
    actions = ["redeliver"]

    @admin.display(description="event")
    def event_link(self, delivery):
        url = reverse("admin:billing_walletevent_change", args=[delivery.event_id])
        return format_html('<a href="{}">{} #{}</a>', url, delivery.event.type, delivery.event_id)

    def has_redeliver_permission(self, request):
        return request.user.has_perm(REDELIVER_PERMISSION)

    @admin.action(description="Redeliver the event (webhook and email again)", permissions=["redeliver"])
    def redeliver(self, request, queryset):
        events = WalletEvent.objects.filter(pk__in=queryset.values("event_id"))
        _redeliver(self, request, events)
