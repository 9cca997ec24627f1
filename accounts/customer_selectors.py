"""Reads about one user's access for the console's customer page: API tokens (and API keys once they exist)."""

from knox.models import AuthToken


def tokens_for_user(*, user, limit: int) -> list[AuthToken]:
    """The user's API tokens (digests only: created, expiry), newest first."""
    return list(AuthToken.objects.filter(user=user).only("created", "expiry").order_by("-created")[:limit])
