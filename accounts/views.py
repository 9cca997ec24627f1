"""The auth API: sign-up, token exchange, and the caller's identity with its wallet."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
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
from config.api_fields import error_responses

_BAD_CREDENTIALS = "Unable to log in with the provided username and password."


class AuthViewSet(viewsets.GenericViewSet):
    """auth/register, auth/token (anonymous) and auth/me (authenticated)."""

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
            "API token. Django's password validators apply. 403 when SIGNUP_ENABLED is false."
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
        url_path="token",
    )
    def token(self, request):
        payload = TokenRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            token = services.issue_token(**payload.validated_data, request=request)
        except services.InvalidCredentials:
            raise ValidationError({"non_field_errors": [_BAD_CREDENTIALS]}) from None
        return Response(TokenSerializer({"token": token.key}).data)

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
