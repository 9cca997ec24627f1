"""billing's OpenAPI description: the operations of the user's and the staff's money API, and the 402."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers

from billing.exceptions import INSUFFICIENT_CREDITS, InsufficientCredits
from billing.models import Wallet
from billing.serializers import (
    CreditTransactionSerializer,
    SpendCapRequestSerializer,
    SpendCapSerializer,
    WalletSerializer,
)
from billing.serializers_staff import (
    AdjustRequestSerializer,
    GrantRequestSerializer,
    GrantResponseSerializer,
    LedgerWriteResponseSerializer,
    ModelPriceSerializer,
    RefundRequestSerializer,
    StaffWalletSerializer,
)
from core.api_fields import IDEMPOTENCY_HEADER, REPLAYED_HEADER, STAFF_ERRORS, error_responses
from core.validators import IDEMPOTENCY_KEY_MAX

# --- the 402 of credit enforcement (any paid operation adds it: `error_responses(..., extra=PAYMENT_REQUIRED)`)


class InsufficientCreditsSerializer(serializers.Serializer):
    """The 402 of a paid call refused by credit enforcement (API.md pins detail and code)."""

    detail = serializers.CharField(default=INSUFFICIENT_CREDITS)
    code = serializers.CharField(default=InsufficientCredits.code)
    balance = serializers.CharField(help_text="The wallet balance, a 6-place decimal string.")
    available = serializers.CharField(
        help_text="balance - held (credits reserved by turns in flight), a 6-place decimal string."
    )


PAYMENT_REQUIRED = {
    402: OpenApiResponse(
        InsufficientCreditsSerializer, description="Credit enforcement refused the call; nothing was written."
    )
}

# --- the user's own wallet and ledger ------------------------------------------------------------

wallet_retrieve = extend_schema(
    summary="Your wallet, with its spending caps",
    responses={200: WalletSerializer, **error_responses(401)},
)

wallet_update = extend_schema(
    summary="Set or remove your spending cap (per calendar day, week or month in REPORT_TIME_ZONE)",
    request=SpendCapRequestSerializer,
    responses={200: WalletSerializer, **error_responses(400, 401)},
)

transactions_list = extend_schema(
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

# --- the staff API: wallets -----------------------------------------------------------------------

USER_ID_PARAMETER = OpenApiParameter(
    "user_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The wallet owner's user id."
)

staff_wallet_retrieve = extend_schema(
    operation_id="admin_wallet_retrieve",
    summary="A user's wallet: balance, low-balance flag and the 50 newest ledger rows",
    parameters=[USER_ID_PARAMETER],
    responses={200: StaffWalletSerializer, **error_responses(*STAFF_ERRORS, 404)},
    tags=["admin"],
)

staff_wallet_partial_update = extend_schema(
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

# --- the staff API: ledger writes (idempotent by header) ---------------------------------------------

staff_grant = extend_schema(
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

staff_refund = extend_schema(
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

staff_adjust = extend_schema(
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

# --- the staff API: model prices ------------------------------------------------------------------

MODEL_PARAMETER = OpenApiParameter(
    "model",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The model name, e.g. gpt-4.1-mini (dots and slashes allowed; percent-encode a slash).",
)

pricing_list = extend_schema(
    operation_id="admin_pricing_list",
    summary="Every model's prices, by model name",
    responses={200: ModelPriceSerializer(many=True), **error_responses(*STAFF_ERRORS)},
    tags=["admin"],
)

pricing_create = extend_schema(
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

pricing_retrieve = extend_schema(
    operation_id="admin_pricing_retrieve",
    summary="One model's prices",
    parameters=[MODEL_PARAMETER],
    responses={200: ModelPriceSerializer, **error_responses(*STAFF_ERRORS, 404)},
    tags=["admin"],
)

pricing_partial_update = extend_schema(
    operation_id="admin_pricing_partial_update",
    summary="Change a model's prices or availability (recorded calls keep their prices)",
    parameters=[MODEL_PARAMETER],
    request=ModelPriceSerializer(partial=True),
    responses={200: ModelPriceSerializer, **error_responses(400, *STAFF_ERRORS, 404)},
    tags=["admin"],
)


staff_spend_cap = extend_schema(
    operation_id="admin_wallet_spend_cap",
    summary="Set or remove staff's spending cap on a user's wallet (the user cannot change it)",
    parameters=[USER_ID_PARAMETER],
    request=SpendCapRequestSerializer,
    responses={
        200: inline_serializer(
            "StaffSpendCaps",
            {
                "spend_cap": SpendCapSerializer(allow_null=True),
                "staff_spend_cap": SpendCapSerializer(allow_null=True),
            },
        ),
        **error_responses(400, *STAFF_ERRORS, 404),
    },
    tags=["admin"],
)
