"""API token authentication: knox's hashed, expiring tokens behind `Authorization: Token <key>`."""

from django.utils import timezone
from knox.auth import TokenAuthentication as KnoxTokenAuthentication


class TokenAuthentication(KnoxTokenAuthentication):
    """knox's scheme, checking only the presented token's expiry.

    knox also loads and sweeps every other token of the user on each request, one query more on the
    hot path; expired tokens are swept when the user next obtains one (accounts.services.issue_token)
    and by `manage.py purge_expired_tokens`.
    """

    def _cleanup_token(self, auth_token) -> bool:
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False
