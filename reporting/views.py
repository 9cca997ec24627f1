"""The staff reporting API: the usage summary (JSON) and the ledger export (streamed CSV)."""

import logging
from dataclasses import fields

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_fields import STAFF_ERRORS, MoneyField, error_responses
from core.money import format_money
from reporting.exports import stream_ledger_csv
from reporting.filters import LedgerExportQuerySerializer, UsageSummaryQuerySerializer
from reporting.selectors import LEDGER_EXPORT_COLUMNS, ledger_export_queryset, usage_summary

logger = logging.getLogger(__name__)


class CostByPurposeSerializer(serializers.Serializer):
    chat = MoneyField(help_text="Calls answering users.")
    tool_followup = MoneyField(help_text="Calls answering tool results.")
    summary = MoneyField(help_text="Calls summarizing sessions.")


def _by_purpose(chat, tool_followup, summary) -> dict:
    return {
        "chat": format_money(chat),
        "tool_followup": format_money(tool_followup),
        "summary": format_money(summary),
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
        help_text="`cost` split by why the calls were made: chat, tool_followup, summary."
    )

    @extend_schema_field(CostByPurposeSerializer)
    def get_cost_by_purpose(self, row) -> dict:
        return _by_purpose(row.chat_cost, row.tool_followup_cost, row.summary_cost)


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
        help_text="`total_cost` split by why the calls were made: chat, tool_followup, summary."
    )
    daily = UsageRowSerializer(many=True, help_text="One row per day with events when bucket=day; else [].")
    buckets = UsageRowSerializer(many=True, help_text="One row per bucket with events, oldest first.")


class UsageSummaryView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="admin_usage_summary",
        summary="LLM usage totals and per-day/week/month rows, cut in REPORT_TIME_ZONE",
        description=(
            "Totals, tokens, cost and unique_users count successful calls; failed provider calls are "
            "counted apart as failed_calls. Without start/end: the last 30 days ending today."
        ),
        parameters=[UsageSummaryQuerySerializer],
        responses={200: UsageSummarySerializer, **error_responses(400, *STAFF_ERRORS)},
        tags=["admin"],
    )
    def get(self, request):
        query = UsageSummaryQuerySerializer.from_query(request.query_params)
        query.is_valid(raise_exception=True)
        summary = usage_summary(**query.validated_data)
        data = {
            **{field.name: getattr(summary, field.name) for field in fields(summary) if field.name != "rows"},
            "cost_by_purpose": {
                "chat": summary.total_chat_cost,
                "tool_followup": summary.total_tool_followup_cost,
                "summary": summary.total_summary_cost,
            },
            "daily": summary.rows if summary.bucket == "day" else [],
            "buckets": summary.rows,
        }
        return Response(UsageSummarySerializer(data).data)


class CSVRenderer(BaseRenderer):
    """Declares text/csv for the schema; the export view answers with its own streaming response."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):  # pragma: no cover
        raise NotImplementedError("the ledger export streams its own response")


class JSONErrorsNegotiation(BaseContentNegotiation):
    """Errors from the CSV endpoint are JSON whatever the Accept header says (never a 406)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return JSONRenderer(), JSONRenderer.media_type


class LedgerExportView(APIView):
    permission_classes = [IsAdminUser]
    # Only CSV is offered; JSONErrorsNegotiation still answers errors as JSON.
    renderer_classes = [CSVRenderer]
    content_negotiation_class = JSONErrorsNegotiation

    @extend_schema(
        operation_id="admin_transactions_export",
        summary="The ledger as CSV, streamed, oldest first",
        description=(
            "Columns: "
            + ", ".join(LEDGER_EXPORT_COLUMNS)
            + ". Times are ISO 8601 UTC; money has 6 places. Filters as the user's ledger, plus user_id."
        ),
        parameters=[LedgerExportQuerySerializer],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="A CSV attachment with a header row.",
                examples=[
                    OpenApiExample(
                        "Ledger",
                        value=",".join(LEDGER_EXPORT_COLUMNS)
                        + "\r\n1,2026-01-05T10:00:00+00:00,7,alice,grant,25.000000,25.000000,Welcome,2,"
                        "ops,,\r\n",
                    )
                ],
            ),
            **{
                (code, "application/json"): response
                for code, response in error_responses(400, *STAFF_ERRORS).items()
            },
        },
        tags=["admin"],
    )
    def get(self, request):
        query = LedgerExportQuerySerializer.from_query(request.query_params)
        query.is_valid(raise_exception=True)
        # Who took a copy of the ledger, and which part: an audit line, not a debugging aid.
        logger.info(
            "ledger export",
            extra={
                "staff_user_id": request.user.pk,
                "filters": {name: str(value) for name, value in query.validated_data.items()},
            },
        )
        return stream_ledger_csv(ledger_export_queryset(**query.validated_data))
