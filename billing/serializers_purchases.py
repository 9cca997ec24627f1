"""Serializers of buying credits: the purchase request (checked by the purchase service's validators) and a purchase."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.models import Purchase
from billing.services.purchases import URL_MAX, validate_credits, validate_return_url
from core.api_fields import MoneyField, StrictCharField
from core.errors import DomainError


def _as_field_error(validator, value, **kwargs):
    """Run a service validator inside the serializer, so every field's errors are reported at once."""
    try:
        return validator(value, **kwargs)
    except DomainError as exc:
        raise serializers.ValidationError(exc.message) from exc


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "example": 500},
            {"type": "string", "pattern": r"^[0-9]+(\.0+)?$", "example": "500"},
        ],
        "description": (
            "A whole number of credits within PURCHASE_MIN_CREDITS..PURCHASE_MAX_CREDITS (defaults 5..10000), "
            "as a JSON integer or a string of digits; a fraction is refused."
        ),
    }
)
class CreditsField(serializers.Field):
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


class WebhookReceivedSerializer(serializers.Serializer):
    received = serializers.BooleanField(read_only=True, default=True)
    outcome = serializers.CharField(
        read_only=True,
        help_text=(
            "What the event did: credited, already_paid, awaiting_payment, amount_mismatch, expired, "
            "already_expired, unknown_session (logged, nothing written) or ignored (another event type)."
        ),
    )
