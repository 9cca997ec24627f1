"""OpenAPI description of the API token scheme (imported by AccountsConfig.ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object


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
