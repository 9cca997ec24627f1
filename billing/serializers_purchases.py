"""Serializers of buying credits: the purchase request (checked by the purchase service's validators) and a purchase."""

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.models import Purchase
from billing.services.purchases import RETURN_URL_PATTERN, URL_MAX, validate_credits, validate_return_url
from core.api_fields import MoneyField, StrictCharField
from core.errors import DomainError


def _as_field_error(validator, value, **kwargs):
    """Run a service validator inside the serializer, so every field's errors are reported at once."""
    try:
        return validator(value, **kwargs)
    except DomainError as exc:
        raise serializers.ValidationError(exc.message) from exc


class CreditsField(serializers.Field):
    """A whole number of credits; the service's validator judges it (bounds read from the settings)."""

    def validate_empty_values(self, data):
        if data is serializers.empty:
            return super().validate_empty_values(data)
        return (False, data)  # null too is judged by the service's validator, in its words

    def to_internal_value(self, data) -> int:
        return _as_field_error(validate_credits, data)

    def to_representation(self, value) -> int:
        return int(value)


def _url_field(what: str):
    return StrictCharField(
        max_length=URL_MAX,
        pattern=RETURN_URL_PATTERN,
        help_text=f"The absolute http(s) address Stripe sends the buyer to {what}.",
    )


class PurchaseRequestSerializer(serializers.Serializer):
    credits = CreditsField()
    success_url = _url_field("after paying (it may contain {CHECKOUT_SESSION_ID}, which Stripe fills in)")
    cancel_url = _url_field("when they go back without paying")

    def validate_success_url(self, value):
        return _as_field_error(validate_return_url, value, field="success_url")

    def validate_cancel_url(self, value):
        return _as_field_error(validate_return_url, value, field="cancel_url")


class PurchaseSerializer(serializers.ModelSerializer):
    """A purchase as its buyer sees it; `checkout_url` while it can still be paid."""

    credits = serializers.IntegerField(read_only=True)
    amount = MoneyField(read_only=True, help_text="What the buyer pays for the credits, in `currency`.")
    currency = serializers.CharField(read_only=True, help_text="ISO 4217, lower case (CREDIT_CURRENCY).")
    status = serializers.ChoiceField(
        choices=Purchase.Status.choices,
        read_only=True,
        help_text="pending until Stripe reports the session paid (then paid: credited) or expired.",
    )
    checkout_url = serializers.SerializerMethodField(
        help_text="Stripe's hosted payment page while the purchase is pending; else null."
    )
    transaction = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The `purchase` ledger row once paid; else null."
    )

    class Meta:
        model = Purchase
        fields = [
            "id",
            "credits",
            "amount",
            "currency",
            "status",
            "checkout_url",
            "stripe_session_id",
            "transaction",
            "created_at",
            "paid_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_checkout_url(self, purchase) -> str | None:
        return purchase.checkout_url or None if purchase.status == Purchase.Status.PENDING else None


class CreditsFieldSchema(OpenApiSerializerFieldExtension):
    """The credits field as the settings bound it when the schema is generated (a string of digits works too)."""

    target_class = CreditsField

    def map_serializer_field(self, auto_schema, direction):
        return {
            "type": "integer",
            "minimum": settings.PURCHASE_MIN_CREDITS,
            "maximum": settings.PURCHASE_MAX_CREDITS,
            "example": 500,
            "description": (
                "A whole number of credits from PURCHASE_MIN_CREDITS to PURCHASE_MAX_CREDITS; a string of "
                'digits ("500") is taken too, a fraction is refused.'
            ),
        }


class WebhookReceivedSerializer(serializers.Serializer):
    received = serializers.BooleanField(read_only=True, default=True)
    outcome = serializers.CharField(
        read_only=True,
        help_text=(
            "What the event did: credited, already_paid, awaiting_payment, amount_mismatch, expired, "
            "already_expired, unknown_session (logged, nothing written) or ignored (another event type)."
        ),
    )
