"""Reporting's API routes (mounted under /api/v1/); each answers with and without a trailing slash."""

from django.urls import re_path

from reporting.views import LedgerExportView, MyUsageView, UsageSummaryView

urlpatterns = [
    re_path(r"^admin/usage/summary/?$", UsageSummaryView.as_view(), name="admin-usage-summary"),
    re_path(r"^users/me/usage/?$", MyUsageView.as_view(), name="my-usage"),
    # A plain pattern: a DRF format suffix would take ".csv" for a renderer choice.
    re_path(
        r"^admin/transactions/export\.csv/?$", LedgerExportView.as_view(), name="admin-transactions-export"
    ),
]
