"""The user's own ledger over HTTP: the wallet summary with its spending caps (the user's own set here), and the transactions, newest first."""

from rest_framework import mixins, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from billing import schema, services
from billing.filters import TransactionFilter
from billing.lot_selectors import live_lots, next_expiry
from billing.models import CreditTransaction, SpendLimit
from billing.selectors import transactions_for_user, wallet_with_caps
from billing.serializers import (
    CreditTransactionSerializer,
    SpendCapRequestSerializer,
    WalletSerializer,
)
from billing.services.limits import UNCHANGED
from core.api import StrictPageSizeMixin
from core.api_fields import NulSafeMixin


class LedgerCursorPagination(StrictPageSizeMixin, CursorPagination):
    """Newest first by id (stable under inserts); a malformed cursor is a 400 like any bad input."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except NotFound as exc:
            raise ValidationError(
                {self.cursor_query_param: ["Invalid cursor; follow the `next`/`previous` links as given."]}
            ) from exc


def _wallet_body(user) -> dict:
    """The wallet summary and each spending cap that is set (one query), its live lots (one more)."""
    found = wallet_with_caps(user=user)
    summary = found.summary
    body = {
        "balance": summary.balance,
        "low_balance": summary.low_balance,
        "low_balance_threshold": summary.low_balance_threshold,
    }
    for name in ("spend_cap", "staff_spend_cap"):
        if getattr(found, name) is not None:
            body[name] = getattr(found, name)
    lots = live_lots(user=user)
    body["lots"], body["next_expiry"] = lots, next_expiry(lots)
    return WalletSerializer(body).data


class WalletViewSet(NulSafeMixin, viewsets.ViewSet):
    @schema.wallet_retrieve
    def retrieve(self, request):
        return Response(_wallet_body(request.user))

    @schema.wallet_update
    def partial_update(self, request):
        payload = SpendCapRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        services.set_spend_cap(
            user=request.user,
            kind=SpendLimit.Kind.USER_CAP,
            amount=data.get("spend_cap", UNCHANGED),
            period=data.get("spend_cap_period"),
        )
        return Response(_wallet_body(request.user))


@schema.transactions_list
class TransactionViewSet(NulSafeMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = CreditTransactionSerializer
    pagination_class = LedgerCursorPagination
    filterset_class = TransactionFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return CreditTransaction.objects.none()
        return transactions_for_user(user=self.request.user)
