"""The staff API: a user's wallet, grants, refunds and adjustments (idempotent by header), model prices."""

import functools
import logging

from django.contrib.auth import get_user_model
from django.http import Http404
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import pricing, schema
from billing.lot_selectors import live_lots, next_expiry
from billing.models import CreditTransaction, ModelPrice, SpendLimit, Wallet
from billing.selectors import is_low_balance, transactions_for_user, wallet_with_caps
from billing.serializers import SpendCapRequestSerializer, SpendCapSerializer
from billing.serializers_staff import (
    AdjustRequestSerializer,
    GrantRequestSerializer,
    LedgerWriteResponseSerializer,
    ModelPriceSerializer,
    RefundRequestSerializer,
    StaffWalletSerializer,
    WalletEnforcementSerializer,
)
from billing.services import adjust, grant, open_wallet, refund, set_enforcement, set_spend_cap
from billing.services.limits import UNCHANGED
from core.api_fields import IDEMPOTENCY_HEADER, REPLAYED_HEADER, NulSafeMixin, id_in_range
from core.money import to_decimal
from core.throttling import UNSAFE_METHODS, StaffMoneyThrottle

audit_logger = logging.getLogger("creditdesk.audit")

STAFF_WALLET_TRANSACTIONS = 50


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


class StaffWriteMixin(NulSafeMixin):
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
    # A grant's lot terms (expires_at, priority, category), when sent, go to the service as they are.
    terms = {name: value for name, value in body.validated_data.items() if name not in ("amount", "reason")}
    row = write(
        amount=body.validated_data.get("amount"),
        reason=body.validated_data["reason"],
        initiated_by=request.user,
        idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        **terms,
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
    @schema.staff_wallet_retrieve
    def get(self, request, user_id: str):
        return self._wallet_response(_get_user_or_404(user_id))

    @schema.staff_wallet_partial_update
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
        lots = live_lots(wallet_id=wallet.pk) if wallet else []
        data["lots"], data["next_expiry"] = lots, next_expiry(lots)
        return Response(StaffWalletSerializer(data).data)


class StaffGrantView(StaffAPIView):
    @schema.staff_grant
    def post(self, request, user_id: str):
        user = _wallet_owner_or_404(user_id)
        return _ledger_write(request, GrantRequestSerializer, functools.partial(grant, user=user))


class StaffRefundView(StaffAPIView):
    @schema.staff_refund
    def post(self, request, transaction_id: str):
        pk = int(transaction_id)
        debit = CreditTransaction.objects.filter(pk=pk).first() if id_in_range(pk) else None
        if debit is None:
            raise Http404(f"No ledger transaction with id {transaction_id}.")
        return _ledger_write(request, RefundRequestSerializer, functools.partial(refund, debit=debit))


class StaffAdjustView(StaffAPIView):
    @schema.staff_adjust
    def post(self, request, user_id: str):
        user = _wallet_owner_or_404(user_id)
        return _ledger_write(request, AdjustRequestSerializer, functools.partial(adjust, user=user))


class StaffPricingListView(StaffWriteMixin, GenericAPIView):
    serializer_class = ModelPriceSerializer
    queryset = ModelPrice.objects.order_by("model")
    filter_backends = []

    @schema.pricing_list
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @schema.pricing_create
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

    @schema.pricing_retrieve
    def get(self, request, model: str):
        return Response(self.get_serializer(self.get_object()).data)

    @schema.pricing_partial_update
    def patch(self, request, model: str):
        price = self.get_object()
        body = self.get_serializer(price, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        changes = {name: value for name, value in body.validated_data.items() if name != "model"}
        price = pricing.update_price(price=price, **changes)
        return Response(self.get_serializer(price).data)


class StaffSpendCapView(StaffWriteMixin, APIView):
    """Staff's spending cap on a user's wallet: the user cannot raise or remove it (theirs binds beside it)."""

    @schema.staff_spend_cap
    def post(self, request, user_id: str):
        user = _get_user_or_404(user_id)
        payload = SpendCapRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        set_spend_cap(
            user=user,
            kind=SpendLimit.Kind.STAFF_CAP,
            amount=data.get("spend_cap", UNCHANGED),
            period=data.get("spend_cap_period"),
        )
        found = wallet_with_caps(user=user)
        return Response(
            {
                "spend_cap": SpendCapSerializer(found.spend_cap).data if found.spend_cap else None,
                "staff_spend_cap": SpendCapSerializer(found.staff_spend_cap).data
                if found.staff_spend_cap
                else None,
            }
        )
