"""sessions_app's OpenAPI description: the operations of chat sessions, turns and files."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiRequest,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers

from billing.schema import PAYMENT_REQUIRED
from core.api_fields import IDEMPOTENCY_HEADER, REPLAYED_HEADER, error_responses
from sessions_app.files import TEXT_TYPES_DECLARED
from sessions_app.serializers import (
    ChatSessionSerializer,
    CreatedTurnSerializer,
    FileUploadSerializer,
    TurnRequestSerializer,
    TurnSerializer,
    UserFileSerializer,
)

# --- chat sessions -------------------------------------------------------------------------------

_SESSION_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The session's id.")

chat_sessions = extend_schema_view(
    list=extend_schema(
        summary="List your chat sessions",
        description="Most recently active first.",
        responses={200: ChatSessionSerializer(many=True), **error_responses(400, 401)},
    ),
    create=extend_schema(
        summary="Open a chat session",
        description="`model` defaults to LLM_DEFAULT_MODEL; a model with no active price is 400.",
        responses={201: ChatSessionSerializer, **error_responses(400, 401, 413)},
    ),
    retrieve=extend_schema(
        summary="Read one of your chat sessions",
        parameters=[_SESSION_ID],
        responses={200: ChatSessionSerializer, **error_responses(401, 404)},
    ),
    partial_update=extend_schema(
        summary="Rename a session or change its model",
        description="A session deleted meanwhile (even by a concurrent request) is 404.",
        parameters=[_SESSION_ID],
        responses={200: ChatSessionSerializer, **error_responses(400, 401, 404, 413)},
    ),
    destroy=extend_schema(
        summary="Delete a session",
        parameters=[_SESSION_ID],
        description="Deletes its messages and turns; LLM call events and ledger rows are kept.",
        responses={204: None, **error_responses(401, 404)},
    ),
)

# --- turns ---------------------------------------------------------------------------------------

_turn_operations = extend_schema_view(
    list=extend_schema(
        summary="List a session's turns",
        description="Oldest first.",
        responses={200: TurnSerializer(many=True), **error_responses(400, 401, 404)},
    ),
    create=extend_schema(
        summary="Take a turn: send a message, get the reply, pay for it",
        description=(
            "Calls the session's model with the recent history and debits the call's cost. Before the call "
            "the turn holds its worst-case cost (prompt tokens plus LLM_MAX_OUTPUT_TOKENS); when enforcement "
            "applies to the wallet (CREDIT_ENFORCEMENT_ENABLED, or the wallet's `enforced` override) and "
            "nothing is available (balance - held <= 0) the turn is refused with 402 and nothing is "
            "written; otherwise the balance may go negative and `low_balance` says so. A provider failure "
            "answers 502 (504 on timeout), debits nothing, and records the failed call; its messages are not "
            "kept, so the client can simply resend. With an `Idempotency-Key` header (scoped to the user), "
            "a retry with the same key and content in the same session answers the first 201 body with "
            "`Idempotent-Replayed: true`, calls no model and charges nothing; other content is 409 "
            "`idempotency_conflict`; a retry while the first is still running is 409 `request_in_progress`. "
            "A failed first attempt (402, 502, 504, any error) leaves the key unused. Keys are kept at least "
            "24 hours; an attempt still running after CREDIT_HOLD_TTL_SECONDS counts as abandoned. A "
            "streamed turn (Accept: text/event-stream) takes the key too; its replay is the first `done` event."
        ),
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="1 to 255 printable ASCII characters, scoped to the user (400 otherwise).",
            ),
            OpenApiParameter(
                REPLAYED_HEADER,
                str,
                OpenApiParameter.HEADER,
                response=[201],
                enum=["true"],
                description="Present (`true`) when this answer replays the first turn sent with the same key.",
            ),
        ],
        request=TurnRequestSerializer,
        responses={
            201: CreatedTurnSerializer,
            **error_responses(
                400,
                401,
                404,
                409,
                413,
                502,
                504,
                extra=PAYMENT_REQUIRED,
                s400=(
                    "Invalid `content` or `Idempotency-Key`, or a worst case more than one call may hold "
                    "(`call_too_costly`); nothing was written."
                ),
                s409=(
                    "Idempotency-Key reused with other content (`idempotency_conflict`), or its first "
                    "request still running (`request_in_progress`)."
                ),
            ),
        },
    ),
)
_turn_session = extend_schema(
    parameters=[
        OpenApiParameter("session_pk", int, OpenApiParameter.PATH, description=_SESSION_ID.description)
    ]
)


def turns(view_class):
    """The turn operations, and the session in their path."""
    return _turn_operations(_turn_session(view_class))


# --- files ---------------------------------------------------------------------------------------

_FILE_NOT_FOUND = inline_serializer("FileNotFound", fields={"detail": serializers.CharField()})
_FILE_REFUSED = inline_serializer(
    "FileRefused", fields={"detail": serializers.CharField(), "code": serializers.CharField()}
)
_FILE_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The file's id.")

user_files = extend_schema_view(
    list=extend_schema(summary="List your files", description="Newest first."),
    create=extend_schema(
        summary="Upload a text file",
        description=(
            "Multipart, field `file`. Text types only (text/*, application/json), else 415; over "
            "FILE_MAX_BYTES 413; past your FILE_QUOTA_BYTES 413 with code `quota_exceeded`."
        ),
        request={
            "multipart/form-data": OpenApiRequest(
                FileUploadSerializer, encoding={"file": {"contentType": TEXT_TYPES_DECLARED}}
            )
        },
        responses={
            201: UserFileSerializer,
            400: OpenApiResponse(description="No `file` field."),
            413: OpenApiResponse(
                _FILE_REFUSED, description="Too large, or over your quota (`quota_exceeded`)."
            ),
            415: OpenApiResponse(_FILE_REFUSED, description="Not a text file, or not a multipart upload."),
        },
    ),
    retrieve=extend_schema(
        summary="Read one of your files' details",
        parameters=[_FILE_ID],
        responses={200: UserFileSerializer, 404: _FILE_NOT_FOUND},
    ),
    destroy=extend_schema(
        summary="Delete one of your files", parameters=[_FILE_ID], responses={204: None, 404: _FILE_NOT_FOUND}
    ),
)

file_content = extend_schema(
    summary="Download one of your files",
    parameters=[_FILE_ID],
    responses={
        (200, "text/plain"): OpenApiResponse(OpenApiTypes.BINARY, description="The file's bytes."),
        404: _FILE_NOT_FOUND,
    },
)
