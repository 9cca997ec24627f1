"""The user's own API keys over HTTP (users/me/keys): create (the secret shown once), list, read, rename or re-limit, revoke."""

from rest_framework import mixins, status, viewsets
from rest_framework.response import Response

from accounts import keys, schema
from accounts.customer_selectors import key_state, live_keys
from accounts.models import ApiKey
from accounts.serializers import (
    ApiKeyRequestSerializer,
    ApiKeySerializer,
    ApiKeyUpdateSerializer,
    CreatedApiKeySerializer,
)
from core.api_fields import NulSafeMixin


def key_body(key: ApiKey, *, secret: str | None = None) -> dict:
    """A key's answer: its limit and the period's usage read from its billing limit (no query)."""
    state = key_state(key)
    body = {
        "id": key.pk,
        "name": key.name,
        "prefix": key.prefix,
        "limit": state.limit,
        "limit_reset": state.limit_reset,
        "limit_remaining": state.limit_remaining,
        "usage": state.usage,
        "expires_at": key.expires_at,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
    }
    if secret is not None:
        return CreatedApiKeySerializer({**body, "key": secret}).data
    return ApiKeySerializer(body).data


@schema.api_keys
class ApiKeyViewSet(
    NulSafeMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    lookup_value_regex = "[0-9]{1,18}"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filter_backends = []
    serializer_class = ApiKeySerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiKey.objects.none()
        return live_keys(user=self.request.user)

    def get_serializer_class(self):
        return {"create": ApiKeyRequestSerializer, "partial_update": ApiKeyUpdateSerializer}.get(
            self.action, ApiKeySerializer
        )

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([key_body(key) for key in page])

    def retrieve(self, request, *args, **kwargs):
        return Response(key_body(self.get_object()))

    def create(self, request, *args, **kwargs):
        payload = ApiKeyRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        key, secret = keys.create_api_key(user=request.user, **payload.validated_data)
        return Response(key_body(key, secret=secret), status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        key = self.get_object()
        payload = ApiKeyUpdateSerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        keys.update_api_key(key=key, **payload.validated_data)
        return Response(key_body(key))

    def destroy(self, request, *args, **kwargs):
        keys.revoke_api_key(key=self.get_object(), revoked_by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
