"""reporting's OpenAPI description: the usage summary and the ledger export (CSV, errors in JSON)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema

from core.api_fields import STAFF_ERRORS, error_responses
from reporting.filters import LedgerExportQuerySerializer, MyUsageQuerySerializer, UsageSummaryQuerySerializer
from reporting.selectors import LEDGER_EXPORT_COLUMNS
from reporting.serializers import MyUsageSerializer, UsageSummarySerializer

usage_summary = extend_schema(
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

ledger_export = extend_schema(
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
        # The CSV endpoint answers its errors as JSON (reporting.views.JSONErrorsNegotiation).
        **{
            (code, "application/json"): response
            for code, response in error_responses(400, *STAFF_ERRORS).items()
        },
    },
    tags=["admin"],
)


my_usage = extend_schema(
    operation_id="my_usage",
    summary="Your own usage: the staff summary's body for your calls, by API key with group_by=key",
    parameters=[MyUsageQuerySerializer],
    responses={200: MyUsageSerializer, **error_responses(400, 401)},
    tags=["users"],
)
