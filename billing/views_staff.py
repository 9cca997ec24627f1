"""The staff API: a user's wallet, grants, refunds and adjustments (idempotent by header), model prices."""

import functools
import logging

from django.contrib.auth import get_user_model
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import pricing
from billing.models import CreditTransaction, ModelPrice, Wallet
from billing.selectors import is_low_balance, transactions_for_user
from billing.serializers_staff import (
    AdjustRequestSerializer,
    GrantRequestSerializer,
    GrantResponseSerializer,
    LedgerWriteResponseSerializer,
    ModelPriceSerializer,
    RefundRequestSerializer,
    StaffWalletSerializer,
    WalletEnforcementSerializer,
)
from billing.services import adjust, grant, open_wallet, refund, set_enforcement
from core.api_fields import STAFF_ERRORS, error_responses, id_in_range
from core.money import to_decimal
from core.throttling import UNSAFE_METHODS, StaffMoneyThrottle
from core.validators import IDEMPOTENCY_KEY_MAX

audit_logger = logging.getLogger("creditdesk.audit")

STAFF_WALLET_TRANSACTIONS = 50
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

USER_ID_PARAMETER = OpenApiParameter(
    "user_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The wallet owner's user id."
)
MODEL_PARAMETER = OpenApiParameter(
    "model",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The model name, e.g. gpt-4.1-mini (dots and slashes allowed; percent-encode a slash).",
)


def _get_user_or_404(user_id: str):
    """The user with its wallet joined (one query), or 404."""
    pk = int(user_id)
    user = None
    if id_in_range(pk):
        user = get_user_model().objects.select_related("wallet").filter(pk=pk).first()
    if user is None:
        raise Http404(f"No user with id {user_id}.")
    return user


def _wallet_or_none(user) -> Wallet | None:
    try:
        return user.wallet
    except Wallet.DoesNotExist:  # only users loaded raw (fixtures) lack one; signals open the rest
        return None


class StaffWriteMixin:
    """Staff-only; writes throttled per staff user (THROTTLE_STAFF_RATE) and logged with who made them.

    Every staff view that moves money or changes prices or enforcement takes this mixin (or StaffAPIView).
    """

    permission_classes = [IsAdminUser]
    throttle_classes = [StaffMoneyThrottle]

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        user = getattr(request, "user", None)
        if request.method in UNSAFE_METHODS and user is not None and user.is_authenticated:
            audit_logger.info(
                "staff api write",
                extra={
                    "staff_user_id": user.pk,
                    "staff_username": user.get_username(),
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                },
            )
        return response


def _ledger_write(request, serializer_class, write) -> Response:
    """Validate the body, run one of billing's ledger services as the caller, and answer its row.

    200 with the row and the balance right after it; `Idempotent-Replayed: true` on a replay.
    """
    body = serializer_class(data=request.data)
    body.is_valid(raise_exception=True)
    row = write(
        amount=body.validated_data.get("amount"),
        reason=body.validated_data["reason"],
        initiated_by=request.user,
        idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
    )
    data = LedgerWriteResponseSerializer({"transaction": row, "balance": row.balance_after}).data
    headers = {REPLAYED_HEADER: "true"} if row.replayed else {}
    return Response(data, status=status.HTTP_200_OK, headers=headers)


def _wallet_owner_or_404(user_id: str):
    """The user named in the path, with a wallet (a user created without one gets it now)."""
    user = _get_user_or_404(user_id)
    if _wallet_or_none(user) is None:
        open_wallet(user=user)
    return user


class StaffAPIView(StaffWriteMixin, APIView):
    pass


class StaffWalletView(StaffAPIView):
    @extend_schema(
        operation_id="admin_wallet_retrieve",
        summary="A user's wallet: balance, low-balance flag and the 50 newest ledger rows",
        parameters=[USER_ID_PARAMETER],
        responses={200: StaffWalletSerializer, **error_responses(*STAFF_ERRORS, 404)},
        tags=["admin"],
    )
    def get(self, request, user_id: str):
        return self._wallet_response(_get_user_or_404(user_id))

    @extend_schema(
        operation_id="admin_wallet_partial_update",
        summary="Set a wallet's enforcement override (logged with the calling staff user)",
        parameters=[USER_ID_PARAMETER],
        # PATCH, but `enforcement` is required: the only thing this PATCH changes.
        request={
            "application/json": {
                "type": "object",
                "properties": {"enforcement": {"type": "string", "enum": list(Wallet.Enforcement.values)}},
                "required": ["enforcement"],
            }
        },
        responses={200: StaffWalletSerializer, **error_responses(400, *STAFF_ERRORS, 404)},
        tags=["admin"],
    )
    def patch(self, request, user_id: str):
        user = _get_user_or_404(user_id)
        body = WalletEnforcementSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if _wallet_or_none(user) is None:
            open_wallet(user=user)
        set_enforcement(user=user, enforcement=body.validated_data["enforcement"], changed_by=request.user)
        return self._wallet_response(_get_user_or_404(user_id))

    def _wallet_response(self, user) -> Response:
        wallet = _wallet_or_none(user)
        balance = to_decimal(wallet.balance) if wallet else to_decimal(0)
        held = to_decimal(wallet.held) if wallet else to_decimal(0)
        rows = list(transactions_for_user(user=user)[:STAFF_WALLET_TRANSACTIONS]) if wallet else []
        data = {
            "user": user,
            "balance": balance,
            "low_balance": is_low_balance(balance),
            "held": held,
            "available": balance - held,
            "enforcement": wallet.enforcement if wallet else Wallet.Enforcement.DEFAULT,
            "transactions": rows,
        }
        return Response(StaffWalletSerializer(data).data)


class StaffGrantView(StaffAPIView):
    @extend_schema(
        operation_id="admin_wallet_grant",
        summary="Grant credits to a user, attributed to the calling staff user",
        description=(
            "With an `Idempotency-Key` header, a retry with the same key, amount and reason returns the "
            "first grant (and the balance right after it) with `Idempotent-Replayed: true` and grants "
            "nothing more; the same key with another amount or reason is 409."
        ),
        parameters=[
            USER_ID_PARAMETER,
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                {"type": "string", "pattern": f"^[ -~]{{1,{IDEMPOTENCY_KEY_MAX}}}$"},
                OpenApiParameter.HEADER,
                required=False,
                description=f"1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters, scoped to the wallet.",
            ),
            OpenApiParameter(
                REPLAYED_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                enum=["true"],
                description="Present (`true`) when this answer replays an earlier grant with the same key.",
            ),
        ],
        request=GrantRequestSerializer,
        responses={
            200: OpenApiResponse(
                GrantResponseSerializer,
                description="Granted, or the replay of an earlier grant with the same key and body.",
            ),
            **error_responses(400, *STAFF_ERRORS, 404, 409),
        },
        examples=[
            OpenApiExample(
                "Grant", value={"amount": "25.000000", "reason": "Support goodwill"}, request_only=True
            )
        ],
        tags=["admin"],
    )
    def post(self, request, user_id: str):
        user = _wallet_owner_or_404(user_id)
        return _ledger_write(request, GrantRequestSerializer, functools.partial(grant, user=user))


IDEMPOTENCY_PARAMETERS = [
    OpenApiParameter(
        IDEMPOTENCY_HEADER,
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        required=False,
        description=(
            f"1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters, scoped to the wallet (one key space "
            "for grants, refunds and adjustments)."
        ),
    ),
    OpenApiParameter(
        REPLAYED_HEADER,
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200],
        enum=["true"],
        description="Present (`true`) when this answer replays an earlier request with the same key.",
    ),
]
TRANSACTION_ID_PARAMETER = OpenApiParameter(
    "transaction_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The debit's ledger row id."
)


class StaffRefundView(StaffAPIView):
    @extend_schema(
        operation_id="admin_transaction_refund",
        summary="Refund all or part of a debit, as a new refund row attributed to the calling staff user",
        description=(
            "Only a `debit` can be refunded. `amount` defaults to what is left refundable (the debit minus "
            "its earlier refunds); the refunds of one debit never add up to more than it (400 on `amount`, "
            "or a `detail` when nothing is left). The new row has kind `refund` and `refund_of` = the "
            "debit's id. With an `Idempotency-Key` header a retry with the same key and body returns the "
            "first refund with `Idempotent-Replayed: true`; the same key with another body is 409."
        ),
        parameters=[TRANSACTION_ID_PARAMETER, *IDEMPOTENCY_PARAMETERS],
        request=RefundRequestSerializer,
        responses={
            200: OpenApiResponse(LedgerWriteResponseSerializer, description="Refunded, or the replay."),
            **error_responses(400, *STAFF_ERRORS, 404, 409),
        },
        examples=[
            OpenApiExample(
                "Partial refund", value={"amount": "0.5", "reason": "Reply was cut off"}, request_only=True
            ),
            OpenApiExample("Refund what is left", value={"reason": "Outage"}, request_only=True),
        ],
        tags=["admin"],
    )
    def post(self, request, transaction_id: str):
        pk = int(transaction_id)
        debit = CreditTransaction.objects.filter(pk=pk).first() if id_in_range(pk) else None
        if debit is None:
            raise Http404(f"No ledger transaction with id {transaction_id}.")
        return _ledger_write(request, RefundRequestSerializer, functools.partial(refund, debit=debit))


class StaffAdjustView(StaffAPIView):
    @extend_schema(
        operation_id="admin_wallet_adjust",
        summary="Correct a wallet by a signed amount (kind adjustment), attributed to the calling staff user",
        description=(
            "`amount` is signed and non-zero (a leading `-` removes credits; the balance may go negative), "
            "`abs(amount) <= 10000`, at most 6 decimal places. `Idempotency-Key` as for grants (same key "
            "space per wallet)."
        ),
        parameters=[USER_ID_PARAMETER, *IDEMPOTENCY_PARAMETERS],
        request=AdjustRequestSerializer,
        responses={
            200: OpenApiResponse(LedgerWriteResponseSerializer, description="Adjusted, or the replay."),
            **error_responses(400, *STAFF_ERRORS, 404, 409),
        },
        examples=[
            OpenApiExample(
                "Adjustment", value={"amount": "-3.25", "reason": "Duplicate grant"}, request_only=True
            )
        ],
        tags=["admin"],
    )
    def post(self, request, user_id: str):
        user = _wallet_owner_or_404(user_id)
        return _ledger_write(request, AdjustRequestSerializer, functools.partial(adjust, user=user))


class StaffPricingListView(StaffWriteMixin, GenericAPIView):
    serializer_class = ModelPriceSerializer
    queryset = ModelPrice.objects.order_by("model")
    filter_backends = []

    @extend_schema(
        operation_id="admin_pricing_list",
        summary="Every model's prices, by model name",
        responses={200: ModelPriceSerializer(many=True), **error_responses(*STAFF_ERRORS)},
        tags=["admin"],
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        operation_id="admin_pricing_create",
        summary="Price a new model",
        request=ModelPriceSerializer,
        responses={
            201: ModelPriceSerializer,
            **error_responses(
                400, *STAFF_ERRORS, 409, s409="The model already has a price (`code` `model_already_priced`)."
            ),
        },
        tags=["admin"],
    )
    def post(self, request):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        price = pricing.create_price(**body.validated_data)
        return Response(self.get_serializer(price).data, status=status.HTTP_201_CREATED)


class StaffPricingDetailView(StaffWriteMixin, GenericAPIView):
    serializer_class = ModelPriceSerializer
    queryset = ModelPrice.objects.all()
    lookup_field = "model"
    filter_backends = []

    def get_object(self) -> ModelPrice:
        model = self.kwargs["model"]
        price = self.get_queryset().filter(model=model).first()
        if price is None:
            raise Http404(f"No price for model {model!r}; create one with POST /api/v1/admin/pricing/.")
        self.check_object_permissions(self.request, price)
        return price

    @extend_schema(
        operation_id="admin_pricing_retrieve",
        summary="One model's prices",
        parameters=[MODEL_PARAMETER],
        responses={200: ModelPriceSerializer, **error_responses(*STAFF_ERRORS, 404)},
        tags=["admin"],
    )
    def get(self, request, model: str):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        operation_id="admin_pricing_partial_update",
        summary="Change a model's prices or availability (recorded calls keep their prices)",
        parameters=[MODEL_PARAMETER],
        request=ModelPriceSerializer(partial=True),
        responses={200: ModelPriceSerializer, **error_responses(400, *STAFF_ERRORS, 404)},
        tags=["admin"],
    )
    def patch(self, request, model: str):
        price = self.get_object()
        body = self.get_serializer(price, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        changes = {name: value for name, value in body.validated_data.items() if name != "model"}
        price = pricing.update_price(price=price, **changes)
        return Response(self.get_serializer(price).data)
