"""The auth API: sign-up, token exchange, log out (one token or all), and the caller's identity with its wallet."""

from django.conf import settings
from django.contrib.auth import logout as end_session
from knox.models import AuthToken
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response

from accounts import schema, services
from accounts.serializers import (
    MeSerializer,
    RegisteredSerializer,
    RegisterSerializer,
    TokenRequestSerializer,
    TokenSerializer,
)
from billing.selectors import wallet_summary
from core.api_fields import NulSafeMixin
from core.throttling import AUTH_THROTTLES, SIGNUP_THROTTLES


class AuthViewSet(NulSafeMixin, viewsets.GenericViewSet):
    """auth/register, auth/token (anonymous, throttled), auth/logout, auth/logout-all and auth/me."""

    pagination_class = None
    filter_backends = []
    # The browsable API's forms follow the action.
    _serializers = {"register": RegisterSerializer, "token": TokenRequestSerializer}

    def get_serializer_class(self):
        return self._serializers.get(self.action, MeSerializer)

    @schema.register
    @action(
        detail=False,
        methods=["post"],
        permission_classes=[AllowAny],
        authentication_classes=[],
        throttle_classes=SIGNUP_THROTTLES,
        url_path="register",
    )
    def register(self, request):
        if not settings.SIGNUP_ENABLED:
            raise PermissionDenied("Sign-up is disabled on this server; ask an operator for an account.")
        payload = RegisterSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        user, token = services.register_user(**payload.validated_data)  # UsernameTaken: 400 on `username`
        body = {"id": user.pk, "username": user.username, "email": user.email, "token": token.key}
        return Response(RegisteredSerializer(body).data, status=status.HTTP_201_CREATED)

    @schema.token
    @action(
        detail=False,
        methods=["post"],
        permission_classes=[AllowAny],
        authentication_classes=[],
        throttle_classes=AUTH_THROTTLES,
        url_path="token",
    )
    def token(self, request):
        payload = TokenRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        # InvalidCredentials: 400 on `non_field_errors`.
        token = services.issue_token(**payload.validated_data, request=request)
        return Response(TokenSerializer({"token": token.key, "expiry": token.expiry}).data)

    @schema.logout
    @action(detail=False, methods=["post"], permission_classes=[IsAuthenticated], url_path="logout")
    def logout(self, request):
        if isinstance(request.auth, AuthToken):
            services.revoke_token(token=request.auth)
        else:
            end_session(request)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @schema.logout_all
    @action(detail=False, methods=["post"], permission_classes=[IsAuthenticated], url_path="logout-all")
    def logout_all(self, request):
        services.revoke_all_tokens(user=request.user, revoked_by=request.user)
        if not isinstance(request.auth, AuthToken):
            end_session(request)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @schema.me
    @action(detail=False, methods=["get"], permission_classes=[IsAuthenticated], url_path="me")
    def me(self, request):
        user = request.user
        summary = wallet_summary(user=user)
        body = {
            "id": user.pk,
            "username": user.username,
            "email": user.email,
            "is_staff": user.is_staff,
            "wallet": {"balance": summary.balance, "low_balance": summary.low_balance},
        }
        return Response(MeSerializer(body).data)
