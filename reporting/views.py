"""The staff reporting API: the usage summary (JSON) and the ledger export (streamed CSV)."""

import logging
from dataclasses import fields

from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_fields import NulSafeMixin
from core.replica import reads_replica, replica_or_primary
from reporting import schema
from reporting.exports import stream_ledger_csv
from reporting.filters import LedgerExportQuerySerializer, MyUsageQuerySerializer, UsageSummaryQuerySerializer
from reporting.selectors import ledger_export_queryset, usage_by_key, usage_summary
from reporting.serializers import MyUsageSerializer, UsageSummarySerializer

logger = logging.getLogger(__name__)


class UsageSummaryView(NulSafeMixin, APIView):
    permission_classes = [IsAdminUser]

    @schema.usage_summary
    @reads_replica  # figures that may lag a few seconds (docs/scaling-data.md)
    def get(self, request):
        query = UsageSummaryQuerySerializer.from_query(request.query_params)
        query.is_valid(raise_exception=True)
        summary = usage_summary(**query.validated_data)
        return Response(UsageSummarySerializer(_summary_data(summary)).data)


def _summary_data(summary) -> dict:
    return {
        **{field.name: getattr(summary, field.name) for field in fields(summary) if field.name != "rows"},
        "cost_by_purpose": {
            "chat": summary.total_chat_cost,
            "tool_followup": summary.total_tool_followup_cost,
            "summary": summary.total_summary_cost,
            "api": summary.total_api_cost,
        },
        "daily": summary.rows if summary.bucket == "day" else [],
        "buckets": summary.rows,
    }


class MyUsageView(NulSafeMixin, APIView):
    """The caller's own usage: the staff summary's body for their calls alone, by API key on request."""

    @schema.my_usage
    def get(self, request):
        query = MyUsageQuerySerializer.from_query(request.query_params)
        query.is_valid(raise_exception=True)
        params = dict(query.validated_data)
        group_by = params.pop("group_by", None)
        summary = usage_summary(**params, user_id=request.user.pk)
        data = _summary_data(summary)
        if group_by == "key":
            data["by_key"] = usage_by_key(
                start=summary.start, end=summary.end, user_id=request.user.pk, model=params.get("model")
            )
        return Response(MyUsageSerializer(data).data)


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


class LedgerExportView(NulSafeMixin, APIView):
    permission_classes = [IsAdminUser]
    # Only CSV is offered; JSONErrorsNegotiation still answers errors as JSON.
    renderer_classes = [CSVRenderer]
    content_negotiation_class = JSONErrorsNegotiation

    @schema.ledger_export
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
        # Pinned now: the rows are read while the response streams, after this method returns.
        rows = ledger_export_queryset(**query.validated_data).using(replica_or_primary())
        return stream_ledger_csv(rows)
