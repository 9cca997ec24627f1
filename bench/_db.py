"""Where the benches' scratch databases live: the server of DATABASE_URL (embedded or given)."""

import os
from urllib.parse import urlsplit, urlunsplit


def maintenance_dsn() -> str:
    """RELIABILITY_POSTGRES, else DATABASE_URL's server with its `postgres` database (to create scratch ones)."""
    explicit = os.environ.get("RELIABILITY_POSTGRES")
    if explicit:
        return explicit
    url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres"))
