"""The user's own ledger over HTTP: the wallet summary and the transactions, newest first."""

from rest_framework import mixins, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from billing import schema
from billing.filters import TransactionFilter
from billing.models import CreditTransaction
from billing.selectors import transactions_for_user, wallet_summary
from billing.serializers import CreditTransactionSerializer, WalletSerializer
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


class WalletViewSet(viewsets.ViewSet):
    @schema.wallet_retrieve
    def retrieve(self, request):
        return Response(WalletSerializer(wallet_summary(user=request.user)).data)


@schema.transactions_list
class TransactionViewSet(NulSafeMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = CreditTransactionSerializer
    pagination_class = LedgerCursorPagination
    filterset_class = TransactionFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return CreditTransaction.objects.none()
        return transactions_for_user(user=self.request.user)
