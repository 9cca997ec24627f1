"""Writes of accounts: sign-up and API tokens."""

import logging

from django.contrib.auth import authenticate, get_user_model
from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token

logger = logging.getLogger(__name__)


class InvalidCredentials(Exception):
    """No active user with that username and password."""


class UsernameTaken(Exception):
    """Another user has this username (possibly registered a moment ago, by a concurrent request)."""


def register_user(*, username: str, email: str, password: str) -> tuple:
    """Create the user (its wallet and starting grant come with it, via billing.signals) and its token."""
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(username=username, email=email, password=password)
            token = Token.objects.create(user=user)
    except IntegrityError as exc:
        # The serializer checked the name; a concurrent sign-up can still win the unique index.
        if get_user_model().objects.filter(username=username).exists():
            raise UsernameTaken(username) from exc
        raise
    logger.info("user registered", extra={"user_id": user.pk})
    return user, token


def issue_token(*, username: str, password: str, request=None) -> Token:
    """The user's API token (created on first use); raise InvalidCredentials on a bad login."""
    user = authenticate(request=request, username=username, password=password)
    if user is None or not user.is_active:
        logger.info("token refused: bad credentials", extra={"username": username[:150]})
        raise InvalidCredentials
    token, _ = Token.objects.get_or_create(user=user)
    return token
