"""The prices page: per-model prices, changed through billing.pricing like the API."""

from django.contrib import admin

from billing import pricing
from billing.forms import ModelPriceForm
from billing.models import ModelPrice


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
