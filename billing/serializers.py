"""Serializers shared by every billing surface: the money field and the ledger row."""

from decimal import Decimal

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from billing.models import CreditTransaction
from billing.money import AmountError, format_money, parse_amount


class MoneyField(serializers.Field):
    """Credits on the wire: a 6-place decimal string out; an exact string or JSON number in."""

    default_error_messages = {"invalid": "A valid number is required."}

    def to_internal_value(self, data) -> Decimal:
        try:
            return parse_amount(data)
        except AmountError as exc:
            raise serializers.ValidationError(str(exc), code="invalid") from exc

    def to_representation(self, value) -> str:
        return format_money(Decimal(value))


class MoneyFieldSchema(OpenApiSerializerFieldExtension):
    """MoneyField in the schema: what the API answers, and, apart, the wider set of inputs it takes.

    Answers are always a 6-place string. Inputs follow API.md's amount rule: a string or a JSON
    number, ASCII digits with an optional fraction of at most 6 places of value (trailing zeros do
    not count). Documenting the answer's pattern for requests made valid input look invalid.
    """

    target_class = MoneyField

    def map_serializer_field(self, auto_schema, direction):
        if direction == "request":
            return {
                "oneOf": [
                    {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,6}0*)?$", "example": "12.5"},
                    {"type": "number", "example": 12.5},
                ],
                "description": (
                    "Credits: a decimal string or a JSON number (parsed exactly), at most 6 decimal "
                    "places of value, no exponent."
                ),
            }
        return {
            "type": "string",
            "format": "decimal",
            "pattern": r"^-?\d+\.\d{6}$",
            "example": "12.500000",
            "description": "Credits: a decimal with 6 places, as a string.",
        }


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers, booleans and other non-strings instead of coercing them."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        if "\x00" in data:
            raise serializers.ValidationError("Null characters are not allowed.", code="null_characters")
        # The schema's maxLength is about what the client sends; DRF would measure after trimming.
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)


class CreditTransactionSerializer(serializers.ModelSerializer):
    """A ledger row as API.md pins it; expects `initiated_by` selected with the row."""

    amount = MoneyField(
        read_only=True, help_text="Signed: grants and refunds +, debits -, adjustments either way."
    )
    balance_after = MoneyField(read_only=True)
    initiated_by = UserRefSerializer(read_only=True, allow_null=True)
    llm_call = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    refund_of = serializers.PrimaryKeyRelatedField(
        read_only=True,
        allow_null=True,
        help_text="For a refund, the id of the debit it gives back; else null.",
    )

    class Meta:
        model = CreditTransaction
        fields = [
            "id",
            "kind",
            "amount",
            "balance_after",
            "reason",
            "created_at",
            "initiated_by",
            "llm_call",
            "refund_of",
        ]
        read_only_fields = fields
