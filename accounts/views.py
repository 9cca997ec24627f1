"""The auth API: sign-up, token exchange, log out (one token or all), and the caller's identity with its wallet."""

from django.conf import settings
from django.contrib.auth import logout as end_session
from drf_spectacular.utils import extend_schema
from knox.models import AuthToken
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response

from accounts import services
from accounts.serializers import (
    USERNAME_TAKEN,
    MeSerializer,
    RegisteredSerializer,
    RegisterSerializer,
    TokenRequestSerializer,
    TokenSerializer,
)
from billing.selectors import wallet_summary
from core.api_fields import error_responses
from core.throttling import AUTH_THROTTLES, SIGNUP_THROTTLES

_BAD_CREDENTIALS = "Unable to log in with the provided username and password."


class AuthViewSet(viewsets.GenericViewSet):
    """auth/register, auth/token (anonymous, throttled), auth/logout, auth/logout-all and auth/me."""

    pagination_class = None
    filter_backends = []
    # The browsable API's forms follow the action.
    _serializers = {"register": RegisterSerializer, "token": TokenRequestSerializer}

    def get_serializer_class(self):
        return self._serializers.get(self.action, MeSerializer)

    @extend_schema(
        summary="Sign up",
        description=(
            "Creates the user, its wallet (STARTING_CREDITS, recorded as a grant when non-zero) and its "
            "API token. Django's password validators apply. 403 when SIGNUP_ENABLED is false. "
            "Limited per client address and per username (THROTTLE_SIGNUP_RATE): 429 with Retry-After."
        ),
        request=RegisterSerializer,
        responses={
            201: RegisteredSerializer,
            **error_responses(
                400, 403, 413, s403="Sign-up is disabled on this server (SIGNUP_ENABLED=false)."
            ),
        },
        auth=[],
    )
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
        try:
            user, token = services.register_user(**payload.validated_data)
        except services.UsernameTaken:
            raise ValidationError({"username": [USERNAME_TAKEN]}) from None
        body = {"id": user.pk, "username": user.username, "email": user.email, "token": token.key}
        return Response(RegisteredSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Exchange a username and password for an API token",
        description=(
            "Each call issues a new token, valid for AUTH_TOKEN_TTL_HOURS (`expiry`); only its digest is "
            "stored. Limited per client address and per username (THROTTLE_AUTH_RATE): 429 with Retry-After."
        ),
        request=TokenRequestSerializer,
        responses={
            200: TokenSerializer,
            **error_responses(400, 413, s400="Missing fields, or bad credentials (`non_field_errors`)."),
        },
        auth=[],
    )
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
        try:
            token = services.issue_token(**payload.validated_data, request=request)
        except services.InvalidCredentials:
            raise ValidationError({"non_field_errors": [_BAD_CREDENTIALS]}) from None
        return Response(TokenSerializer({"token": token.key, "expiry": token.expiry}).data)

    @extend_schema(
        summary="Log out: revoke the token this request carries",
        description="The token stops working at once. Signed in with a session (browsable API): ends it.",
        request=None,
        responses={204: None, **error_responses(401)},
    )
    @action(detail=False, methods=["post"], permission_classes=[IsAuthenticated], url_path="logout")
    def logout(self, request):
        if isinstance(request.auth, AuthToken):
            services.revoke_token(token=request.auth)
        else:
            end_session(request)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Log out everywhere: revoke every API token of the caller",
        request=None,
        responses={204: None, **error_responses(401)},
    )
    @action(detail=False, methods=["post"], permission_classes=[IsAuthenticated], url_path="logout-all")
    def logout_all(self, request):
        services.revoke_all_tokens(user=request.user)
        if not isinstance(request.auth, AuthToken):
            end_session(request)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="Who am I, and my wallet", responses={200: MeSerializer, **error_responses(401)})
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
