"""Existing DRF authtoken keys become knox tokens (stored as digests only), then the clear-text table goes.

Clients keep their key and header (`Authorization: Token <key>`) until it expires AUTH_TOKEN_TTL_HOURS
after this migration; then they log in again (POST /api/v1/auth/token). No key is kept in clear.
"""

from datetime import timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone

LEGACY_TABLE = "authtoken_token"


def move_legacy_tokens(apps, schema_editor):
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS

    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return
    AuthToken = apps.get_model("knox", "AuthToken")
    expiry = timezone.now() + timedelta(hours=settings.AUTH_TOKEN_TTL_HOURS)
    quoted = schema_editor.quote_name(LEGACY_TABLE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id, created FROM {quoted}")  # noqa: S608 (a constant name)
        rows = cursor.fetchall()
    AuthToken.objects.bulk_create(
        [
            AuthToken(
                digest=hash_token(key),
                token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH],
                user_id=user_id,
                created=created,
                expiry=expiry,
            )
            for key, user_id, created in rows
        ],
        ignore_conflicts=True,
    )
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {quoted}")
        # rest_framework.authtoken is no longer installed: forget its migrations, so adding it back
        # later would create its table again instead of assuming it exists.
        cursor.execute("DELETE FROM django_migrations WHERE app = %s", ["authtoken"])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_shared_cache_table"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [migrations.RunPython(move_legacy_tokens, migrations.RunPython.noop)]
