"""API authentication: knox's hashed, expiring tokens (`Authorization: Token <key>`), and the gateway's API keys (`Bearer cdk_...`)."""

import binascii
from hmac import compare_digest

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.crypto import hash_token
from knox.settings import CONSTANTS, knox_settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from accounts.keys import key_for_secret
from accounts.selectors import tokens_with_key


class TokenAuthentication(KnoxTokenAuthentication):
    """knox's scheme, its candidates read by one prepared statement, checking only the presented token's expiry.

    knox also loads and sweeps every other token of the user on each request, one query more on the
    hot path; expired tokens are swept when the user next obtains one (accounts.services.issue_token)
    and by `manage.py purge_expired_tokens`.
    """

    def authenticate_credentials(self, token: bytes):
        """knox's own check, step for step; only the read of the candidates is ours (accounts.selectors).

        A token that is not text, or holds a NUL, matches nothing: 401, as any unknown token.
        """
        msg = _("Invalid token.")
        try:
            token = token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(msg) from None
        if "\x00" in token:
            raise exceptions.AuthenticationFailed(msg)
        for auth_token in tokens_with_key(token_key=token[: CONSTANTS.TOKEN_KEY_LENGTH]):
            if self._cleanup_token(auth_token):
                continue
            try:
                digest = hash_token(token)
            except (TypeError, binascii.Error):
                raise exceptions.AuthenticationFailed(msg) from None
            if compare_digest(digest, auth_token.digest):
                if knox_settings.AUTO_REFRESH and auth_token.expiry:
                    self.renew_token(auth_token)
                return self.validate_user(auth_token)
        raise exceptions.AuthenticationFailed(msg)

    def _cleanup_token(self, auth_token) -> bool:
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False


class ApiKeyAuthentication(BaseAuthentication):
    """The gateway's scheme: `Authorization: Bearer cdk_...`, a user's own API key (accounts.keys).

    No header: anonymous (the view's permission answers 401). A header that is not a live key
    (malformed, unknown, revoked, expired) is refused here, 401. `request.auth` is the ApiKey.
    The session tokens of /api/v1/ are not keys, and keys are not accepted there.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret or " " in secret:
            raise exceptions.AuthenticationFailed(
                "Send your API key as `Authorization: Bearer cdk_...`.", code="invalid_api_key"
            )
        key = key_for_secret(secret)
        if key is None:
            raise exceptions.AuthenticationFailed(
                "Incorrect API key provided: it is unknown, revoked or expired. "
                "Create a new one on the API keys page (/keys/) or with POST /api/v1/users/me/keys.",
                code="invalid_api_key",
            )
        return key.user, key

    def authenticate_header(self, request):
        return self.keyword
