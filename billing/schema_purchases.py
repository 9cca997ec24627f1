"""OpenAPI description of buying credits: the user's purchases and Stripe's webhook."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)

from billing.serializers_purchases import (
    PurchaseRequestSerializer,
    PurchaseSerializer,
    WebhookReceivedSerializer,
)
from core.api_fields import CodedErrorSerializer, DetailErrorSerializer, error_responses

_DISABLED = {
    503: OpenApiResponse(
        CodedErrorSerializer,
        description="Buying credits is off on this server (no STRIPE_API_KEY); `code` is `payments_disabled`.",
    )
}
_PROVIDER_FAILED = {
    502: OpenApiResponse(
        CodedErrorSerializer,
        description=(
            "Stripe refused or could not be reached; nothing was charged and the purchase is left "
            "`expired`. `code` is `payment_provider_error`."
        ),
    )
}

purchases = extend_schema_view(
    list=extend_schema(
        summary="Your purchases of credits, newest first",
        responses={200: PurchaseSerializer(many=True), **error_responses(401)},
        tags=["purchases"],
    ),
    retrieve=extend_schema(
        summary="One of your purchases (poll it after Stripe sends you back)",
        responses={200: PurchaseSerializer, **error_responses(401, 404)},
        tags=["purchases"],
    ),
    create=extend_schema(
        summary="Buy credits: start a Stripe Checkout and get its payment page",
        description=(
            "Creates a pending purchase of `credits` × CREDIT_UNIT_PRICE in CREDIT_CURRENCY and a Stripe "
            "Checkout Session (mode `payment`) for it; send the buyer to `checkout_url`. The credits arrive "
            "when Stripe reports the session paid (webhook), as a `purchase` ledger row, once. "
            "`credits` must be a whole number within PURCHASE_MIN_CREDITS..PURCHASE_MAX_CREDITS."
        ),
        request=PurchaseRequestSerializer,
        responses={
            201: PurchaseSerializer,
            **error_responses(400, 401, extra={**_PROVIDER_FAILED, **_DISABLED}),
        },
        examples=[
            OpenApiExample(
                "Buy 500 credits",
                value={
                    "credits": 500,
                    "success_url": "https://app.example.com/buy/?session_id={CHECKOUT_SESSION_ID}",
                    "cancel_url": "https://app.example.com/buy/",
                },
                request_only=True,
            )
        ],
        tags=["purchases"],
    ),
)

stripe_webhook = extend_schema(
    operation_id="payments_stripe_webhook",
    summary="Stripe's webhook: Checkout Session events, verified by their Stripe-Signature",
    description=(
        "No authentication: the `Stripe-Signature` header (`t=<unix seconds>,v1=<hex HMAC-SHA256 of "
        "<t>.<body> with STRIPE_WEBHOOK_SECRET>`, at most 5 minutes old) is the proof. `checkout.session.completed` (and "
        "`checkout.session.async_payment_succeeded`) with `payment_status: paid` credits the purchase once; "
        "`checkout.session.expired` marks it expired; other events answer 200 and change nothing."
    ),
    request={"application/json": OpenApiTypes.OBJECT},
    responses={
        200: WebhookReceivedSerializer,
        400: OpenApiResponse(
            DetailErrorSerializer,
            description="Missing, wrong, stale or other-body signature (`code` `invalid_signature`); nothing written.",
        ),
        **error_responses(413),
        503: OpenApiResponse(
            CodedErrorSerializer, description="No STRIPE_WEBHOOK_SECRET here; `code` is `payments_disabled`."
        ),
    },
    auth=[],
    tags=["payments"],
)
