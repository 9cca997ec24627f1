"""Reads on every authenticated request's path: the credential presented, with its user, in one prepared statement."""

from django.contrib.auth import get_user_model
from knox.models import AuthToken

from accounts.models import ApiKey
from core.db import attnames, execute_prepared, loaded_row, selected

User = get_user_model()

# Each is the ORM's query (a filter with select_related("user")) written once and prepared on the
# connection (core.db.execute_prepared). Built by the ORM, the same read cost every request about
# 0.5 ms of CPU, compiled by Django and planned by PostgreSQL each time: a fifth of a whole
# `auth/me` (docs/performance.md, "Eighth session").
_TOKENS_SQL = f"""
SELECT {selected(AuthToken, "token")}, {selected(User, "token_user")}
  FROM {AuthToken._meta.db_table} token
  JOIN {User._meta.db_table} token_user ON token_user.id = token.user_id
 WHERE token.token_key = %(token_key)s
"""  # noqa: S608 - our tables, the value bound
_LIVE_KEY_SQL = f"""
SELECT {selected(ApiKey, "api_key")}, {selected(User, "key_user")}
  FROM {ApiKey._meta.db_table} api_key
  JOIN {User._meta.db_table} key_user ON key_user.id = api_key.user_id
 WHERE api_key.digest = %(digest)s AND api_key.revoked_at IS NULL
 ORDER BY api_key.id
 LIMIT 1
"""  # noqa: S608 - our tables, the value bound


def _with_user(model, row):
    """An instance of `model` from the front of `row`, its `user` from the rest."""
    split = len(attnames(model))
    instance = loaded_row(model, row[:split])
    instance.user = loaded_row(User, row[split:])
    return instance


def tokens_with_key(*, token_key: str) -> list[AuthToken]:
    """The API tokens whose key (the secret's first characters) is `token_key`, each with its user loaded."""
    return [_with_user(AuthToken, row) for row in execute_prepared(_TOKENS_SQL, {"token_key": token_key})]


def unrevoked_key(*, digest: str) -> ApiKey | None:
    """The unrevoked API key whose digest is `digest`, with its user loaded (None: there is none)."""
    rows = execute_prepared(_LIVE_KEY_SQL, {"digest": digest})
    return _with_user(ApiKey, rows[0]) if rows else None
