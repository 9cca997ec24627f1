"""accounts' OpenAPI description: the API token scheme (registered by AccountsConfig.ready) and the auth operations."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.utils import extend_schema, extend_schema_view

from accounts.serializers import (
    ASCII_USERNAME_PATTERN,
    UNICODE_USERNAME_PATTERN,
    ApiKeyRequestSerializer,
    ApiKeySerializer,
    ApiKeyUpdateSerializer,
    CreatedApiKeySerializer,
    MeSerializer,
    RegisteredSerializer,
    RegisterSerializer,
    TokenRequestSerializer,
    TokenSerializer,
)
from core.api_fields import error_responses


class KnoxTokenScheme(OpenApiAuthenticationExtension):
    """The same `tokenAuth` scheme DRF's token authentication had: clients see no change."""

    target_class = "accounts.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        definition = build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")
        definition["description"] = (
            "`Authorization: Token <key>` with a key from POST /api/v1/auth/token or auth/register. "
            "Keys expire (see the token response's `expiry`) and are revoked by auth/logout and auth/logout-all."
        )
        return definition


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """The gateway's scheme: the user's own API key as a bearer token."""

    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema):
        definition = build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Bearer")
        definition["description"] = (
            "`Authorization: Bearer cdk_...` with a key from POST /api/v1/users/me/keys (the OpenAI "
            "clients' `api_key`). Only the /v1/ gateway takes it."
        )
        return definition


class UsernameFieldSchema(OpenApiSerializerFieldExtension):
    """A username to sign up with: an ASCII name, or one with letters or digits of other scripts.

    The validator's own `^[\\w.@+-]+$` would say "ASCII only" to an OpenAPI reader (ECMA-262's `\\w`),
    which the server is not; the two patterns say what ECMA-262 can.
    """

    target_class = "accounts.serializers.UsernameField"

    def map_serializer_field(self, auto_schema, direction):
        field = self.target
        schema = auto_schema._map_serializer_field(field, direction, bypass_extensions=True)
        schema["anyOf"] = [{"pattern": ASCII_USERNAME_PATTERN}, {"pattern": UNICODE_USERNAME_PATTERN}]
        return schema


# --- the auth API's operations ------------------------------------------------------------------

register = extend_schema(
    summary="Sign up",
    description=(
        "Creates the user, its wallet (STARTING_CREDITS, recorded as a grant when non-zero) and its "
        "API token. Django's password validators apply. 403 when SIGNUP_ENABLED is false. "
        "Limited per client address and per username (THROTTLE_SIGNUP_RATE): 429 with Retry-After."
    ),
    request=RegisterSerializer,
    responses={
        201: RegisteredSerializer,
        **error_responses(400, 403, 413, s403="Sign-up is disabled on this server (SIGNUP_ENABLED=false)."),
    },
    auth=[],
)

token = extend_schema(
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

logout = extend_schema(
    summary="Log out: revoke the token this request carries",
    description="The token stops working at once. Signed in with a session (browsable API): ends it.",
    request=None,
    responses={204: None, **error_responses(401)},
)

logout_all = extend_schema(
    summary="Log out everywhere: revoke every API token of the caller and end their browser sessions",
    request=None,
    responses={204: None, **error_responses(401)},
)

me = extend_schema(summary="Who am I, and my wallet", responses={200: MeSerializer, **error_responses(401)})


api_keys = extend_schema_view(
    list=extend_schema(summary="Your API keys, newest first (revoked keys are not listed; never the secret)"),
    retrieve=extend_schema(
        summary="One of your API keys", responses={200: ApiKeySerializer, **error_responses(404)}
    ),
    create=extend_schema(
        summary="Create an API key for the OpenAI-compatible gateway (/v1/); `key` is shown only here",
        request=ApiKeyRequestSerializer,
        responses={201: CreatedApiKeySerializer, **error_responses(400)},
    ),
    partial_update=extend_schema(
        summary="Rename a key, or change its limit or how often the limit resets",
        request=ApiKeyUpdateSerializer,
        responses={200: ApiKeySerializer, **error_responses(400, 404)},
    ),
    destroy=extend_schema(
        summary="Revoke a key at once: its next call is 401", responses={204: None, **error_responses(404)}
    ),
)
