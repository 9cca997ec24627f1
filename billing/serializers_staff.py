"""Serializers of the staff API: wallet view, grant request/response, model prices."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing import pricing
from billing.models import CreditLot, ModelPrice, Wallet
from billing.serializers import CreditLotSerializer, CreditTransactionSerializer, NextExpirySerializer
from billing.services import (
    GRANT_MAX,
    PRIORITY_MAX,
    PRIORITY_MIN,
    REASON_MAX,
    validate_adjustment_amount,
    validate_expires_at,
    validate_grant_amount,
    validate_priority,
    validate_reason,
    validate_refund_amount,
)
from core.api_fields import MoneyField, StrictCharField, StrictDateTimeField
from core.errors import DomainError

# --- wallets and grants ----------------------------------------------------------------------


class StaffUserSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    email = serializers.EmailField(read_only=True)


class StaffWalletSerializer(serializers.Serializer):
    """A user's wallet as staff see it: balance, flag, and the 50 newest ledger rows."""

    user = StaffUserSerializer(read_only=True)
    balance = MoneyField(read_only=True)
    low_balance = serializers.BooleanField(read_only=True)
    held = MoneyField(read_only=True, help_text="Reserved by turns in flight.")
    available = MoneyField(read_only=True, help_text="balance - held: what enforcement compares with 0.")
    enforcement = serializers.ChoiceField(
        choices=Wallet.Enforcement.choices,
        read_only=True,
        help_text="default: follow CREDIT_ENFORCEMENT_ENABLED; exempt: never refused; enforced: refused when empty.",
    )
    transactions = CreditTransactionSerializer(
        many=True, read_only=True, help_text="Newest first, at most 50."
    )
    lots = CreditLotSerializer(many=True, read_only=True, help_text="The live credit lots, in burn order.")
    next_expiry = NextExpirySerializer(
        read_only=True,
        allow_null=True,
        help_text="When credits next expire and how many (null: none expire).",
    )


class WalletEnforcementSerializer(serializers.Serializer):
    """PATCH body of a staff wallet: the enforcement override (each change is logged with the staff user)."""

    enforcement = serializers.ChoiceField(
        choices=Wallet.Enforcement.choices,
        help_text="default: follow CREDIT_ENFORCEMENT_ENABLED; exempt: never refused; enforced: refused when empty.",
    )


class GrantRequestSerializer(serializers.Serializer):
    """`amount` and `reason`, checked by the same validators the grant service applies."""

    amount = MoneyField(
        minimum=0,
        exclusive_minimum=True,
        maximum=int(GRANT_MAX),
        help_text=f"More than 0 and at most {GRANT_MAX}, at most 6 decimal places.",
    )
    reason = StrictCharField(
        max_length=REASON_MAX,
        help_text="Why these credits are granted (required, at most 500 characters).",
        error_messages={
            "required": "A reason is required: say why these credits are granted.",
            "blank": "A reason is required: say why these credits are granted.",
            "null": "A reason is required: say why these credits are granted.",
        },
    )

    expires_at = StrictDateTimeField(
        required=False,
        allow_null=True,
        help_text="When what is left of these credits expires (ISO 8601, in the future); omit or null: never.",
    )
    priority = serializers.IntegerField(
        required=False,
        min_value=PRIORITY_MIN,
        max_value=PRIORITY_MAX,
        help_text="0-100, default 50: charges burn lower numbers first.",
    )
    category = serializers.ChoiceField(
        choices=CreditLot.Category.choices, required=False, help_text="promotional (the default) or paid."
    )

    def validate_amount(self, value):
        return _as_field_error(validate_grant_amount, value)

    def validate_reason(self, value):
        return _as_field_error(validate_reason, value)

    def validate_expires_at(self, value):
        # The form only: whether it must still be ahead is the service's (a replay's may have passed).
        return _as_field_error(lambda raw: validate_expires_at(raw, past_ok=True), value)

    def validate_priority(self, value):
        return _as_field_error(validate_priority, value)


class GrantResponseSerializer(serializers.Serializer):
    transaction = CreditTransactionSerializer(read_only=True)
    balance = MoneyField(read_only=True, help_text="The wallet balance right after this transaction.")


# The answer of every staff write of one ledger row (grant, refund, adjustment): the row, the balance.
LedgerWriteResponseSerializer = GrantResponseSerializer


def _reason_field(why: str):
    message = f"A reason is required: say why {why}."
    return StrictCharField(
        max_length=REASON_MAX,
        help_text=f"Why {why} (required, at most 500 characters).",
        error_messages={"required": message, "blank": message, "null": message},
    )


class RefundRequestSerializer(serializers.Serializer):
    """Optional `amount` (default: all that is left refundable of the debit) and a required `reason`."""

    amount = MoneyField(
        required=False,
        help_text="More than 0 and at most what is left refundable of the debit; omit it to refund all of that.",
    )
    reason = _reason_field("this debit is refunded")

    def validate_amount(self, value):
        return _as_field_error(validate_refund_amount, value)

    def validate_reason(self, value):
        return _as_field_error(validate_reason, value)


class AdjustRequestSerializer(serializers.Serializer):
    """A signed, non-zero `amount` (abs <= 10000) and a required `reason`."""

    amount = MoneyField(
        help_text="Signed and non-zero: + adds credits, - removes them; abs(amount) <= 10000, at most 6 places."
    )
    reason = _reason_field("this wallet is corrected")

    def validate_amount(self, value):
        return _as_field_error(validate_adjustment_amount, value)

    def validate_reason(self, value):
        return _as_field_error(validate_reason, value)


# --- model prices ----------------------------------------------------------------------------


@extend_schema_field({"type": "boolean"})
class StrictBooleanField(serializers.Field):
    """A JSON boolean only: "true", 1 or "yes" are refused rather than guessed at."""

    default_error_messages = {"invalid": "Must be a JSON boolean: true or false."}

    def to_internal_value(self, data) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data

    def to_representation(self, value) -> bool:
        return bool(value)


class ModelPriceSerializer(serializers.ModelSerializer):
    """A model's prices in credits per 1000 tokens; writes go through billing.pricing."""

    model = StrictCharField(
        max_length=100,
        # Checked as sent: " gpt-4o" is not a model name (and must not become one by trimming).
        trim_whitespace=False,
        pattern=f"^{pricing.MODEL_NAME_PATTERN}$",
        help_text="The model name as the provider spells it (e.g. gpt-4.1-mini); fixed once created.",
    )
    input_price_per_1k = MoneyField(
        minimum=0, maximum=pricing.PRICE_MAX, help_text="Credits per 1000 input tokens, >= 0."
    )
    output_price_per_1k = MoneyField(
        minimum=0, maximum=pricing.PRICE_MAX, help_text="Credits per 1000 output tokens, >= 0."
    )
    active = StrictBooleanField(required=False, help_text="Whether new sessions and turns may use it.")

    class Meta:
        model = ModelPrice
        fields = ["model", "input_price_per_1k", "output_price_per_1k", "active", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def validate_input_price_per_1k(self, value):
        return _as_field_error(pricing.validate_price, value, field="input_price_per_1k")

    def validate_output_price_per_1k(self, value):
        return _as_field_error(pricing.validate_price, value, field="output_price_per_1k")

    def validate_model(self, value):
        if self.instance is not None and value != self.instance.model:
            raise serializers.ValidationError(
                "The model name cannot be changed: recorded calls and sessions refer to it. "
                "Create a price for the new name instead."
            )
        return _as_field_error(pricing.validate_model_name, value)


def _as_field_error(validator, value, **kwargs):
    """Run a service validator inside a serializer, so every field's errors are reported at once."""
    try:
        return validator(value, **kwargs)
    except DomainError as exc:
        raise serializers.ValidationError(exc.message) from exc
