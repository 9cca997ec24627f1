"""The wire shapes of the staff reporting API's answers: the usage summary, its rows and their cost split."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api_fields import MoneyField
from core.money import format_money


class CostByPurposeSerializer(serializers.Serializer):
    chat = MoneyField(help_text="Chat turns answering users (the cost less the three below).")
    tool_followup = MoneyField(help_text="Calls answering tool results.")
    summary = MoneyField(help_text="Calls summarizing sessions.")
    api = MoneyField(help_text="Calls through the OpenAI-compatible gateway (API keys).")


def _by_purpose(row) -> dict:
    return {
        "chat": format_money(row.chat_cost),
        "tool_followup": format_money(row.tool_followup_cost),
        "summary": format_money(row.summary_cost),
        "api": format_money(row.api_cost),
    }


class UsageRowSerializer(serializers.Serializer):
    date = serializers.DateField(help_text="The bucket's first day (YYYY-MM-DD, REPORT_TIME_ZONE).")
    calls = serializers.IntegerField(help_text="Successful calls.")
    failed_calls = serializers.IntegerField(help_text="Failed provider calls (not in the other figures).")
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost = MoneyField(help_text="Gross metered cost of the successful calls (refunds are not netted out).")
    unique_users = serializers.IntegerField(help_text="Users with at least one successful call.")
    shadow_refusals = serializers.IntegerField(
        help_text="Turns served while enforcement was off that enforcement would have refused (shadow mode)."
    )
    summary_fallbacks = serializers.IntegerField(
        help_text="Session summaries whose model call failed, so a deterministic fallback summary was used."
    )
    cost_by_purpose = serializers.SerializerMethodField(
        help_text="`cost` split by why the calls were made: chat, tool_followup, summary, api (the gateway)."
    )

    @extend_schema_field(CostByPurposeSerializer)
    def get_cost_by_purpose(self, row) -> dict:
        return _by_purpose(row)


class UsageSummarySerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()
    bucket = serializers.ChoiceField(choices=["day", "week", "month"], allow_null=True)
    total_calls = serializers.IntegerField()
    failed_calls = serializers.IntegerField()
    total_input_tokens = serializers.IntegerField()
    total_output_tokens = serializers.IntegerField()
    total_cost = MoneyField(
        help_text=(
            "Gross usage: what the successful calls cost when they were made, as metered. Refunds and "
            "adjustments are ledger corrections, not usage, and are not netted out here; read them in the "
            "ledger (kind=refund, each with refund_of) or the CSV export."
        )
    )
    unique_users = serializers.IntegerField()
    shadow_refusals = serializers.IntegerField(
        help_text="Turns served while enforcement was off that enforcement would have refused (shadow mode)."
    )
    summary_fallbacks = serializers.IntegerField(
        help_text="Session summaries whose model call failed, so a deterministic fallback summary was used."
    )
    cost_by_purpose = CostByPurposeSerializer(
        help_text="`total_cost` split by why the calls were made: chat, tool_followup, summary, api (the gateway)."
    )
    daily = UsageRowSerializer(many=True, help_text="One row per day with events when bucket=day; else [].")
    buckets = UsageRowSerializer(many=True, help_text="One row per bucket with events, oldest first.")


class MyUsageRowSerializer(UsageRowSerializer):
    unique_users = None


class KeyUsageSerializer(serializers.Serializer):
    key_id = serializers.IntegerField()
    prefix = serializers.CharField()
    name = serializers.CharField()
    calls = serializers.IntegerField(help_text="Successful calls made with the key.")
    failed_calls = serializers.IntegerField(
        help_text=(
            "Calls made with the key that failed (provider error or timeout): charged nothing and not in "
            "`calls` or `cost`. A key whose calls in the range all failed is listed with calls 0 and these."
        )
    )
    cost = MoneyField(help_text="What the key's successful calls cost.")


class MyUsageSerializer(UsageSummarySerializer):
    """The staff summary's body for the caller's own calls: no unique_users; `by_key` with group_by=key."""

    unique_users = None
    daily = MyUsageRowSerializer(many=True, help_text="One row per day with calls when bucket=day; else [].")
    buckets = MyUsageRowSerializer(many=True, help_text="One row per bucket with calls, oldest first.")
    by_key = KeyUsageSerializer(
        many=True,
        required=False,
        help_text="With group_by=key: one row per API key with calls (successful or failed) in the range.",
    )
