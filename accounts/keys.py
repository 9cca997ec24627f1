"""API keys for the gateway: created (the secret shown once), renamed, limited, revoked, and looked up by digest."""

import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey
from accounts.selectors import unrevoked_key
from billing import services as billing_services
from billing.models import SpendLimit
from core.errors import DomainError

logger = logging.getLogger(__name__)

KEY_PREFIX = "cdk_"
PREFIX_LENGTH = 12
NAME_MAX = 100
# last_used_at is written at most this often per key: a call should not cost a write for it.
LAST_USED_RESOLUTION = timedelta(seconds=60)
# The API's words for a limit's period, and billing's.
RESETS = {
    "daily": SpendLimit.Period.DAY,
    "weekly": SpendLimit.Period.WEEK,
    "monthly": SpendLimit.Period.MONTH,
}
RESET_NAMES = {period: name for name, period in RESETS.items()}
UNSET = object()


class InvalidKeyRequest(DomainError):
    code = "invalid"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _period(limit_reset: str | None) -> str | None:
    if limit_reset is None:
        return None
    try:
        return RESETS[limit_reset]
    except KeyError:
        raise InvalidKeyRequest(
            'limit_reset is "daily", "weekly", "monthly" or null (never resets).', field="limit_reset"
        ) from None


def _name(name) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX or "\x00" in name:
        raise InvalidKeyRequest(f"A key's name is 1 to {NAME_MAX} characters.", field="name")
    return name.strip()


def create_api_key(
    *,
    user,
    name: str,
    limit: Decimal | None = None,
    limit_reset: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its secret (returned once, stored only as a digest), with its billing limit, in one transaction."""
    name = _name(name)
    period = _period(limit_reset)
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidKeyRequest("expires_at must be in the future.", field="expires_at")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        spend_limit = billing_services.open_key_limit(user=user, amount=limit, period=period)
        key = ApiKey.objects.create(
            user=user,
            name=name,
            prefix=secret[:PREFIX_LENGTH],
            digest=digest(secret),
            spend_limit=spend_limit,
            expires_at=expires_at,
        )
    logger.info("api key created", extra={"user_id": user.pk, "api_key_id": key.pk, "prefix": key.prefix})
    return key, secret


def update_api_key(*, key: ApiKey, name=UNSET, limit=UNSET, limit_reset=UNSET) -> ApiKey:
    """Rename a key, or change its limit or the limit's period (the new period's spending is recounted)."""
    if name is not UNSET:
        key.name = _name(name)
        key.save(update_fields=["name"])
    if limit is not UNSET or limit_reset is not UNSET:
        current = key.spend_limit
        amount = current.amount if limit is UNSET else limit
        period = current.period if limit_reset is UNSET else _period(limit_reset)
        key.spend_limit = billing_services.change_key_limit(spend_limit=current, amount=amount, period=period)
    return key


def revoke_api_key(*, key: ApiKey, revoked_by=None) -> ApiKey:
    """Revoke a key at once: its next call is 401. The row stays (its calls stay attributed to it)."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=key.revoked_at)
        logger.info(
            "api key revoked",
            extra={
                "user_id": key.user_id,
                "api_key_id": key.pk,
                "revoked_by": getattr(revoked_by, "pk", None),
            },
        )
    return key


def has_expired(key: ApiKey, *, now: datetime) -> bool:
    """Whether the key stopped working by `now` (at its expires_at): the gateway's rule, which its owner's pages show."""
    return key.expires_at is not None and key.expires_at <= now


def key_for_secret(secret: str) -> ApiKey | None:
    """The live key (not revoked, not expired, its user active) for a presented secret, with its user."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    key = unrevoked_key(digest=digest(secret))
    now = timezone.now()
    if key is None or not key.user.is_active or has_expired(key, now=now):
        return None
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        key.last_used_at = now
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key
