"""Writes of accounts: sign-up, and API tokens (issued, revoked, swept; stored hashed by django-rest-knox)."""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from knox.models import AuthToken

from core.errors import DomainError

logger = logging.getLogger(__name__)

USERNAME_TAKEN = "A user with that username already exists."


class InvalidCredentials(DomainError):
    """No active user with that username and password (400 on `non_field_errors`, as DRF words a bad login)."""

    code = "invalid_credentials"

    def __init__(self):
        super().__init__(
            "Unable to log in with the provided username and password.", field="non_field_errors"
        )


class UsernameTaken(DomainError):
    """Another user has this username (possibly registered a moment ago, by a concurrent request)."""

    code = "username_taken"

    def __init__(self, username: str):
        super().__init__(USERNAME_TAKEN, field="username")
        self.username = username


@dataclass(frozen=True)
class IssuedToken:
    """A new API token: `key` is shown to the client once and stored only as a digest."""

    key: str
    expiry: datetime | None


def _new_token(user) -> IssuedToken:
    """A fresh token for the user; their expired tokens and any beyond AUTH_TOKEN_MAX_PER_USER go."""
    tokens = AuthToken.objects.filter(user=user)
    tokens.filter(expiry__lt=timezone.now()).delete()
    keep = max(settings.AUTH_TOKEN_MAX_PER_USER - 1, 0)
    surplus = list(tokens.order_by("-created").values_list("digest", flat=True)[keep:])
    if surplus:
        AuthToken.objects.filter(digest__in=surplus).delete()
    instance, key = AuthToken.objects.create(user=user)
    return IssuedToken(key=key, expiry=instance.expiry)


def create_account(*, username: str, email: str, password: str):
    """Create the user (its wallet and starting grant come with it, via billing.signals): sign-up on the API and the web page.

    UsernameTaken when the name, as stored (NFKC-normalized), is another user's; nothing is written.
    """
    username = get_user_model().normalize_username(username)
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(username=username, email=email, password=password)
    except IntegrityError as exc:
        # The form or serializer checked the name; a concurrent sign-up can still win the unique index.
        if get_user_model().objects.filter(username=username).exists():
            raise UsernameTaken(username) from exc
        raise
    logger.info("user registered", extra={"user_id": user.pk})
    return user


def register_user(*, username: str, email: str, password: str) -> tuple:
    """Create the user (create_account) and its first API token, together or not at all."""
    with transaction.atomic():
        user = create_account(username=username, email=email, password=password)
        token = _new_token(user)
    return user, token


def issue_token(*, username: str, password: str, request=None) -> IssuedToken:
    """A new API token for a good login (expires after AUTH_TOKEN_TTL_HOURS); InvalidCredentials otherwise."""
    user = authenticate(request=request, username=username, password=password)
    if user is None or not user.is_active:
        # The username is what the client typed; it may be a password pasted in the wrong field.
        logger.info("token refused: bad credentials")
        raise InvalidCredentials
    token = _new_token(user)
    logger.info("token issued", extra={"user_id": user.pk})
    return token


def revoke_token(*, token: AuthToken) -> None:
    """Log out one client: the token stops working at once."""
    user_id = token.user_id
    token.delete()
    logger.info("token revoked", extra={"user_id": user_id})


def revoke_all_tokens(*, user, revoked_by) -> int:
    """Log the user out everywhere: every API token of theirs and every browser session (their
    hash changes with the session generation) stops working. Returns how many tokens there were.

    `revoked_by` is who asked, as the log line records it: the user themself (logout-all), a staff
    user (the admin's action), or None for an operator at the shell (`manage.py revoke_tokens`). It
    has no default: one that fell back to the user made an operator's revocation read as a logout.
    """
    with transaction.atomic():
        count, _ = AuthToken.objects.filter(user=user).delete()
        get_user_model().objects.filter(pk=user.pk).update(session_generation=F("session_generation") + 1)
    logger.info(
        "all tokens revoked",
        extra={"user_id": user.pk, "tokens": count, "revoked_by": revoked_by.pk if revoked_by else None},
    )
    return count


def purge_expired_tokens() -> int:
    """Delete every expired token (they already fail authentication); returns how many."""
    count, _ = AuthToken.objects.filter(expiry__lt=timezone.now()).delete()
    logger.info("expired tokens purged", extra={"tokens": count})
    return count
