"""Staff API routes (mounted under /api/v1/); each answers with and without a trailing slash."""

from django.urls import re_path

from billing.views_staff import (
    StaffAdjustView,
    StaffGrantView,
    StaffPricingDetailView,
    StaffPricingListView,
    StaffRefundView,
    StaffSpendCapView,
    StaffWalletView,
)

urlpatterns = [
    re_path(r"^admin/wallets/(?P<user_id>[0-9]+)/?$", StaffWalletView.as_view(), name="admin-wallet"),
    re_path(
        r"^admin/wallets/(?P<user_id>[0-9]+)/grant/?$", StaffGrantView.as_view(), name="admin-wallet-grant"
    ),
    re_path(
        r"^admin/wallets/(?P<user_id>[0-9]+)/adjust/?$", StaffAdjustView.as_view(), name="admin-wallet-adjust"
    ),
    re_path(
        r"^admin/wallets/(?P<user_id>[0-9]+)/spend-cap/?$",
        StaffSpendCapView.as_view(),
        name="admin-wallet-spend-cap",
    ),
    re_path(
        r"^admin/transactions/(?P<transaction_id>[0-9]+)/refund/?$",
        StaffRefundView.as_view(),
        name="admin-transaction-refund",
    ),
    re_path(r"^admin/pricing/?$", StaffPricingListView.as_view(), name="admin-pricing-list"),
    # Model names contain dots ("gpt-4.1-mini") and may contain slashes ("openai/gpt-4o"): the
    # non-greedy match leaves an optional trailing slash to the route.
    re_path(
        r"^admin/pricing/(?P<model>.+?)/?$", StaffPricingDetailView.as_view(), name="admin-pricing-detail"
    ),
]
