"""Serializers shared by every billing surface: the ledger row, and the user's wallet summary."""

from rest_framework import serializers

from billing.models import CreditTransaction
from billing.services.limits import LIMIT_MAX
from core.api_fields import MoneyField


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


class SpendCapSerializer(serializers.Serializer):
    amount = MoneyField(read_only=True)
    period = serializers.CharField(
        read_only=True, help_text="day, week or month (calendar, REPORT_TIME_ZONE)."
    )
    spending = MoneyField(read_only=True, help_text="This period's charges plus the wallet's open holds.")
    reset_at = serializers.DateTimeField(read_only=True, help_text="When the period ends.")


class CreditLotSerializer(serializers.Serializer):
    """A live lot, as both wallet views list them (in burn order)."""

    id = serializers.IntegerField(read_only=True)
    source = serializers.CharField(
        read_only=True,
        help_text="grant, purchase, allowance, adjustment, refund or opening (the balance carried over).",
    )
    category = serializers.CharField(read_only=True, help_text="paid or promotional.")
    priority = serializers.IntegerField(read_only=True, help_text="0-100; lower burns first.")
    effective_at = serializers.DateTimeField(read_only=True)
    expires_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="null: never.")
    amount = MoneyField(read_only=True, help_text="What entered the wallet.")
    remaining = MoneyField(read_only=True, help_text="What is left of it.")


class NextExpirySerializer(serializers.Serializer):
    at = serializers.DateTimeField(read_only=True, help_text="The soonest expiry among the live lots.")
    amount = MoneyField(read_only=True, help_text="What is left of the lots that expire then.")


class WalletSerializer(serializers.Serializer):
    balance = MoneyField(read_only=True)
    low_balance = serializers.BooleanField(read_only=True, help_text="balance <= low_balance_threshold.")
    low_balance_threshold = MoneyField(read_only=True)
    # Not read_only: drf-spectacular lists every read-only field as required, and these are absent
    # when no cap is set (the serializer only ever renders).
    spend_cap = SpendCapSerializer(required=False, help_text="Your own spending cap (absent: none).")
    staff_spend_cap = SpendCapSerializer(
        required=False, help_text="A spending cap staff set, which you cannot change (absent: none)."
    )
    lots = CreditLotSerializer(
        many=True, read_only=True, help_text="Your live credit lots, in the order charges burn them."
    )
    next_expiry = NextExpirySerializer(
        read_only=True,
        allow_null=True,
        help_text="When credits next expire and how many (null: none expire).",
    )


class SpendCapRequestSerializer(serializers.Serializer):
    spend_cap = MoneyField(
        allow_null=True,
        required=False,
        minimum=0,
        maximum=LIMIT_MAX,
        help_text="Credits per period; null removes the cap. Left out: the cap's amount stays.",
    )
    spend_cap_period = serializers.ChoiceField(
        choices=["day", "week", "month"],
        required=False,
        help_text="day, week or month (calendar, REPORT_TIME_ZONE). Left out: the cap's period stays "
        "(a new cap: month).",
    )
