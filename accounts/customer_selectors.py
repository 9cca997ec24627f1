"""Reads about one user's access for the user's own pages and the console's customer page: API tokens and API keys."""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import CharField, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone
from knox.models import AuthToken

from accounts.keys import KEY_PREFIX, PREFIX_LENGTH, RESET_NAMES, has_expired
from accounts.models import ApiKey
from billing.selectors import limit_spending
from core.money import quantize

# A customer search by key prefix names at most this many owners (a prefix is nearly unique).
OWNERS_PER_PREFIX = 20


def tokens_for_user(*, user, limit: int) -> list[AuthToken]:
    """The user's API tokens (digests only: created, expiry), newest first."""
    return list(AuthToken.objects.filter(user=user).only("created", "expiry").order_by("-created")[:limit])


@dataclass(frozen=True)
class KeyState:
    """A key with its limit and the current period's usage, as its owner and support see them."""

    key: ApiKey
    limit: Decimal | None
    limit_reset: str | None  # "daily", "weekly", "monthly", or None: the limit never resets
    usage: Decimal  # spent in the current period (since creation without a reset), open holds included
    limit_remaining: Decimal | None
    expired: bool  # past its expires_at: the gateway refuses it (401), though it is listed until revoked


def key_state(key: ApiKey) -> KeyState:
    """A key read with its `spend_limit`, as a KeyState (no query)."""
    spend_limit = key.spend_limit
    usage = limit_spending(spend_limit=spend_limit)
    return KeyState(
        key=key,
        limit=spend_limit.amount,
        limit_reset=RESET_NAMES.get(spend_limit.period),
        usage=usage,
        limit_remaining=None if spend_limit.amount is None else quantize(spend_limit.amount - usage),
        expired=has_expired(key, now=timezone.now()),
    )


def live_keys(*, user) -> QuerySet[ApiKey]:
    """The user's keys that are not revoked, newest first, each with its billing limit joined; expired
    ones too (KeyState.expired says which), so their owner sees them, and may still revoke them."""
    return (
        ApiKey.objects.filter(user=user, revoked_at__isnull=True)
        .select_related("spend_limit")
        .order_by("-id")
    )


def keys_for_user(*, user, limit: int) -> list[KeyState]:
    """The user's keys, revoked ones included, newest first, with their limits (one query)."""
    rows = ApiKey.objects.filter(user=user).select_related("spend_limit").order_by("-id")[:limit]
    return [key_state(key) for key in rows]


def owners_of_key_prefix(*, term: str) -> list[int]:
    """The ids of the users whose keys start with `term` (a prefix, or a whole key pasted: its first 12 characters)."""
    if not term.startswith(KEY_PREFIX):
        return []
    prefix = term[:PREFIX_LENGTH]
    return list(
        ApiKey.objects.filter(prefix__startswith=prefix)
        .values_list("user_id", flat=True)
        .distinct()[:OWNERS_PER_PREFIX]
    )


def key_ids_of(*, user) -> QuerySet:
    """The ids (as text, as the admin's log names objects) of every key the user has had, revoked ones
    too: a subquery, for the console's staff actions (a revocation is logged on its key)."""
    return ApiKey.objects.filter(user=user).annotate(key_id=Cast("id", CharField())).values("key_id")
