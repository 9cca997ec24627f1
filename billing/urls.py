"""Billing's API routes (mounted under /api/v1/): the user's own ledger and the staff API."""

from django.urls import include, path, re_path

from billing.views_purchases import StripeWebhookView

urlpatterns = [
    path("", include("billing.urls_me")),
    path("", include("billing.urls_staff")),
    re_path(r"^payments/stripe/webhook/?$", StripeWebhookView.as_view(), name="stripe-webhook"),
]
