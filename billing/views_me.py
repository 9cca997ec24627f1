"""The user's own ledger over HTTP: the wallet summary and the transactions, newest first."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from billing.filters import TransactionFilter
from billing.models import CreditTransaction
from billing.selectors import transactions_for_user, wallet_summary
from billing.serializers import CreditTransactionSerializer
from core.api import StrictPageSizeMixin
from core.api_fields import MoneyField, NulSafeMixin, error_responses


class WalletSerializer(serializers.Serializer):
    balance = MoneyField(read_only=True)
    low_balance = serializers.BooleanField(read_only=True, help_text="balance <= low_balance_threshold.")
    low_balance_threshold = MoneyField(read_only=True)


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
    @extend_schema(summary="Your wallet", responses={200: WalletSerializer, **error_responses(401)})
    def retrieve(self, request):
        return Response(WalletSerializer(wallet_summary(user=request.user)).data)


@extend_schema(
    summary="Your ledger, newest first",
    description=(
        "Cursor-paginated. `created_after` is inclusive and `created_before` exclusive; both take an ISO "
        "date (midnight UTC) or datetime. An unknown `kind` or a malformed value is 400."
    ),
    responses={
        200: CreditTransactionSerializer(many=True),
        **error_responses(
            400,
            401,
            s400='A malformed filter or cursor, or a NUL character in a query parameter: `{"<parameter>": ["message"]}`.',
        ),
    },
)
class TransactionViewSet(NulSafeMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = CreditTransactionSerializer
    pagination_class = LedgerCursorPagination
    filterset_class = TransactionFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return CreditTransaction.objects.none()
        return transactions_for_user(user=self.request.user)
