"""Billing's API routes (mounted under /api/v1/): the user's own ledger and the staff API."""

from django.urls import include, path

urlpatterns = [
    path("", include("billing.urls_me")),
    path("", include("billing.urls_staff")),
]
