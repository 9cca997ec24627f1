"""Chat sessions and turns over HTTP: thin viewsets that call the selectors and the turn service."""

from django.db import DatabaseError, transaction
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response

from billing.exceptions import InsufficientCredits
from billing.permissions import CreditEnforcement, PaymentRequired
from billing.selectors import is_low_balance
from config.api_fields import MAX_ID, NulSafeMixin, error_responses
from sessions_app import services
from sessions_app.api_errors import provider_error_to_http
from sessions_app.models import ChatSession, Turn
from sessions_app.providers import ProviderError
from sessions_app.selectors import TurnContext, sessions_for_user, turn_context, turns_for_session
from sessions_app.serializers import (
    ChatSessionSerializer,
    CreatedTurnSerializer,
    TurnRequestSerializer,
    TurnSerializer,
)

_SESSION_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The session's id.")


class OwnsSession(BasePermission):
    """The URL's session must be the caller's: another user's session is 404, never 403."""

    def has_permission(self, request, view) -> bool:
        view.load_session()
        return True


@extend_schema_view(
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
class ChatSessionViewSet(
    NulSafeMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = ChatSessionSerializer
    lookup_value_regex = "[0-9]+"
    permission_classes = [IsAuthenticated]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filter_backends = []  # no query filters on sessions

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ChatSession.objects.none()
        return sessions_for_user(user=self.request.user)

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.create_session(
            owner=self.request.user, title=data.get("title", ""), model=data.get("model")
        )

    def perform_update(self, serializer):
        data = serializer.validated_data
        session = serializer.instance
        try:
            with transaction.atomic():  # a savepoint, so the check below can still query
                serializer.instance = services.update_session(
                    session=session, title=data.get("title"), model=data.get("model")
                )
        except DatabaseError as exc:
            # A DELETE that committed after this request read the session: Django's save finds no
            # row to update. That is the 404 a missing session gets; any other error goes on up.
            if type(exc) is not DatabaseError or ChatSession.objects.filter(pk=session.pk).exists():
                raise
            raise Http404(f"No {ChatSession._meta.object_name} matches the given query.") from exc

    def perform_destroy(self, instance):
        services.delete_session(session=instance)


@extend_schema_view(
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
            "kept, so the client can simply resend."
        ),
        request=TurnRequestSerializer,
        responses={
            201: CreatedTurnSerializer,
            **error_responses(
                400, 401, 402, 404, 413, 502, 504, s400="Invalid `content`; nothing was written."
            ),
        },
    ),
)
@extend_schema(
    parameters=[
        OpenApiParameter("session_pk", int, OpenApiParameter.PATH, description=_SESSION_ID.description)
    ]
)
class TurnViewSet(NulSafeMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = TurnSerializer
    filter_backends = []
    session: ChatSession
    turn_context: TurnContext | None = None
    # Read by billing.permissions.CreditEnforcement instead of querying the wallet again.
    enforcement_state = None

    @classmethod
    def as_view(cls, actions=None, **initkwargs):
        # The provider is called outside any transaction: never wrap this view in ATOMIC_REQUESTS.
        return transaction.non_atomic_requests(super().as_view(actions, **initkwargs))

    def get_permissions(self):
        permissions = [IsAuthenticated(), OwnsSession()]
        if self.action == "create":
            permissions.append(CreditEnforcement())
        return permissions

    def get_serializer_class(self):
        # The browsable API offers a `content` form for POST; responses use the turn serializers.
        return TurnRequestSerializer if self.action == "create" else TurnSerializer

    def load_session(self):
        session_pk = int(self.kwargs["session_pk"])
        if self.action == "create" and session_pk <= MAX_ID:
            # A turn reads its session, price, wallet state and history in one query.
            self.turn_context = turn_context(user=self.request.user, session_id=session_pk)
            if self.turn_context is None:  # the same 404 as get_object_or_404 below
                raise Http404(f"No {ChatSession._meta.object_name} matches the given query.")
            self.session = self.turn_context.session
            self.enforcement_state = self.turn_context.enforcement
            return
        self.session = get_object_or_404(sessions_for_user(user=self.request.user), pk=session_pk)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Turn.objects.none()
        return turns_for_session(session=self.session)

    def create(self, request, *args, **kwargs):
        payload = TurnRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            result = services.take_turn(
                session=self.session,
                user=request.user,
                content=payload.validated_data["content"],
                context=self.turn_context,
            )
        except InsufficientCredits as refusal:
            raise PaymentRequired.from_refusal(refusal) from None
        except ProviderError as exc:
            raise provider_error_to_http(exc) from exc
        except services.SessionGone:
            raise NotFound("This chat session was deleted while its reply was being generated.") from None
        turn = result.turn
        turn.balance_after = result.balance_after
        turn.low_balance = is_low_balance(result.balance_after)
        return Response(CreatedTurnSerializer(turn).data, status=status.HTTP_201_CREATED)
