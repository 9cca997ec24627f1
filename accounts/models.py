"""The project's user model: Django's user, ours from the first migration so it can grow."""

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone
from django.utils.crypto import salted_hmac


class User(AbstractUser):
    # Raised by "log out everywhere" (accounts.services.revoke_all_tokens): it is part of the hash
    # every browser session of the user carries, so all of them end with their API tokens. A database
    # default too: an older release, not knowing the column, inserts users while the next one rolls out.
    session_generation = models.PositiveIntegerField(default=0, db_default=0)

    class Meta:
        db_table = "accounts_user"

    def _get_session_auth_hash(self, secret=None):
        """Django's hash of the password, with the session generation once raised (Django 5.2's hook,
        behind get_session_auth_hash and its SECRET_KEY_FALLBACKS variant): generation 0 hashes exactly
        as Django does, so no session ends when this field arrives."""
        if not self.session_generation:
            return super()._get_session_auth_hash(secret=secret)
        key_salt = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash"
        value = f"{self.password}#{self.session_generation}"
        return salted_hmac(key_salt, value, secret=secret, algorithm="sha256").hexdigest()


class ApiKey(models.Model):
    """A user's own key for the OpenAI-compatible gateway (`Authorization: Bearer cdk_...`).

    Only the SHA-256 digest of the key is stored (the key is 256 random bits: a fast digest is
    enough), with its first 12 characters (`prefix`) to recognize it by. Its spending limit lives in
    billing (`spend_limit`, enforced in the reservation statement); revoking keeps the row, so its
    calls stay attributed.
    """

    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="api_keys", db_index=False)
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    digest = models.CharField(max_length=64, unique=True)
    spend_limit = models.OneToOneField("billing.SpendLimit", on_delete=models.PROTECT, related_name="api_key")
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "accounts_apikey"
        verbose_name = "API key"
        indexes = [models.Index(fields=["user", "-id"], name="apikey_user_id_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None
