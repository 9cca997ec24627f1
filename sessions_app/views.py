"""Chat sessions and turns over HTTP: thin viewsets that call the selectors and the turn service."""

from django.db import DatabaseError, transaction
from django.http import Http404
from django.shortcuts import get_object_or_404
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from core.api_fields import IDEMPOTENCY_HEADER, MAX_ID, REPLAYED_HEADER, NulSafeMixin
from core.throttling import TurnThrottle, refuse
from sessions_app import idempotency, schema, services, streaming
from sessions_app.exceptions import ProviderFailed
from sessions_app.models import ChatSession, Turn
from sessions_app.providers import ProviderError
from sessions_app.selectors import TurnContext, counted_turn_context, sessions_for_user, turns_for_session
from sessions_app.serializers import (
    ChatSessionSerializer,
    TurnRequestSerializer,
    TurnSerializer,
    created_turn_body,
)


@schema.chat_sessions
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


@schema.turns
class TurnViewSet(NulSafeMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = TurnSerializer
    # Credit enforcement is the turn's reservation (billing.services.reserve): one conditional
    # statement that refuses with 402 and writes nothing, before any model call.
    permission_classes = [IsAuthenticated]
    # Turns started per user (THROTTLE_TURN_RATE); reading the list is not counted.
    throttle_classes = [TurnThrottle]
    filter_backends = []
    session: ChatSession
    turn_context: TurnContext | None = None
    streamed = False  # create with `Accept: text/event-stream` (sessions_app.streaming)

    @classmethod
    def as_view(cls, actions=None, **initkwargs):
        # The provider is called outside any transaction: never wrap this view in ATOMIC_REQUESTS.
        return transaction.non_atomic_requests(super().as_view(actions, **initkwargs))

    def get_serializer_class(self):
        # The browsable API offers a `content` form for POST; responses use the turn serializers.
        return TurnRequestSerializer if self.action == "create" else TurnSerializer

    def perform_content_negotiation(self, request, force=False):
        # A streamed turn's refusals (400, 402, 404, ...) are plain JSON before any stream: never 406.
        if self.action == "create" and streaming.wants_event_stream(request):
            self.streamed = True
            return JSONRenderer(), JSONRenderer.media_type
        return super().perform_content_negotiation(request, force)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttles
        # The URL's session must be the caller's: another user's session is 404, never 403.
        session_pk = int(self.kwargs["session_pk"])
        if self.action != "create":
            self.session = get_object_or_404(sessions_for_user(user=request.user), pk=session_pk)
            return
        # A turn reads its session and history up front, and the same statement counts it against the
        # turn throttle (TurnThrottle left the hit on the request): 429 comes before 404, as before.
        self.turn_context, rate = counted_turn_context(
            user=request.user,
            session_id=session_pk if session_pk <= MAX_ID else 0,  # 0 names no session
            rate_hit=getattr(request, "pending_rate_hit", None),
        )
        if not rate.allowed:
            refuse(scope=TurnThrottle.scope, path=request.path, verdict=rate)
        if self.turn_context is None:  # the same 404 as get_object_or_404 above
            raise Http404(f"No {ChatSession._meta.object_name} matches the given query.")
        self.session = self.turn_context.session

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Turn.objects.none()
        return turns_for_session(session=self.session)

    def create(self, request, *args, **kwargs):
        payload = TurnRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        content = payload.validated_data["content"]
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if self.streamed:
            if key is None:
                return self._take_turn(request, content)
            claimed = idempotency.claim(
                user=request.user, key=key, session_id=self.session.pk, content=content
            )
            if not isinstance(claimed, idempotency.Claim):  # done already: its `done` event again
                return streaming.replayed_stream(claimed)
            try:
                return self._take_turn(request, content, claim=claimed)
            except BaseException:  # refused before the stream (402, ...): the key stays unused
                idempotency.release(claimed=claimed)
                raise
        if key is None:
            return Response(self._take_turn(request, content), status=status.HTTP_201_CREATED)
        body, replayed = idempotency.run_once(
            user=request.user,
            key=key,
            session_id=self.session.pk,
            content=content,
            take=lambda record: self._take_turn(request, content, record=record),
        )
        headers = {REPLAYED_HEADER: "true"} if replayed else {}
        return Response(body, status=status.HTTP_201_CREATED, headers=headers)

    def _take_turn(self, request, content: str, record=None, claim=None) -> dict:
        """The turn's 201 body; with `record`, it is built and recorded inside the turn's transaction.
        Streamed: the response, its key's `claim` (if any) completed with the turn or freed."""
        bodies = []

        def before_commit(result: services.TurnResult) -> None:
            bodies.append(_created_body(result))
            record(bodies[0], result.turn.pk)

        try:
            if self.streamed:
                return streaming.stream_turn(
                    session=self.session,
                    user=request.user,
                    content=content,
                    context=self.turn_context,
                    claim=claim,
                )
            result = services.take_turn(
                session=self.session,
                user=request.user,
                content=content,
                context=self.turn_context,
                before_commit=before_commit if record else None,
            )
        except ProviderError as exc:
            raise ProviderFailed.from_provider_error(exc) from exc
        except services.SessionGone:
            raise NotFound("This chat session was deleted while its reply was being generated.") from None
        return bodies[0] if bodies else _created_body(result)


def _created_body(result: services.TurnResult) -> dict:
    return created_turn_body(result.turn, balance_after=result.balance_after)
