"""Buying credits over HTTP: the user's purchases (users/me/purchases) and Stripe's signed webhook (payments/stripe/webhook)."""

from rest_framework import mixins, status, viewsets
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import schema_purchases as schema
from billing.models import Purchase
from billing.selectors import purchases_for_user
from billing.serializers_purchases import (
    PurchaseRequestSerializer,
    PurchaseSerializer,
    WebhookReceivedSerializer,
)
from billing.services.purchases import buy_credits, handle_stripe_webhook, require_payments
from core.api_fields import NulSafeMixin
from core.throttling import SettingRateThrottle


class PurchaseThrottle(SettingRateThrottle):
    """Purchases started per user (THROTTLE_PURCHASE_RATE): each one is a Checkout Session at Stripe. Reads are not counted."""

    scope = "purchase"
    rate_setting = "THROTTLE_PURCHASE_RATE"

    def ident(self, request, view):
        if request.method != "POST" or not request.user.is_authenticated:
            return None
        return str(request.user.pk)


@schema.purchases
class PurchaseViewSet(
    NulSafeMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    lookup_value_regex = "[0-9]{1,18}"
    filter_backends = []
    serializer_class = PurchaseSerializer
    # PurchaseThrottle counts purchases started, in create() once the request is valid: a refused
    # request (a typo in `credits`) is not one. Reads are not counted.
    throttle_classes = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Purchase.objects.none()
        return purchases_for_user(user=self.request.user)

    def create(self, request, *args, **kwargs):
        require_payments()  # before the body: a client learns at once that it cannot buy here
        payload = PurchaseRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        purchase = buy_credits(
            user=request.user,
            **payload.validated_data,
            before_start=lambda: PurchaseThrottle().allow_request(request, self),
        )
        return Response(PurchaseSerializer(purchase).data, status=status.HTTP_201_CREATED)


class StripeWebhookView(NulSafeMixin, APIView):
    """Stripe's events, verified by their Stripe-Signature; no user, no session, so no CSRF."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []  # Stripe retries what fails; a throttle would only delay credits

    @schema.stripe_webhook
    def post(self, request):
        outcome = handle_stripe_webhook(
            payload=request.body, signature=request.headers.get("Stripe-Signature")
        )
        return Response(WebhookReceivedSerializer({"received": True, "outcome": outcome}).data)
