"""The user's own ledger (mounted under /api/v1/): users/me/wallet and users/me/transactions."""

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from billing.views_me import TransactionViewSet, WalletViewSet
from billing.views_purchases import PurchaseViewSet

router = SimpleRouter()
router.trailing_slash = "/?"  # the constructor only knows "/" or ""; the contract wants both
router.register(r"users/me/transactions", TransactionViewSet, basename="my-transaction")
router.register(r"users/me/purchases", PurchaseViewSet, basename="my-purchase")

urlpatterns = [
    re_path(
        r"^users/me/wallet/?$",
        WalletViewSet.as_view({"get": "retrieve", "patch": "partial_update"}),
        name="my-wallet",
    ),
    *router.urls,
]
