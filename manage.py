#!/usr/bin/env python
"""Django's command-line utility for creditdesk."""

import os
import re
import sys

# How psycopg and its pool say that no connection could be made (not a statement that failed).
UNREACHABLE = re.compile(
    r"connection (to server .*)?failed|couldn't get a connection|could not connect", re.S
)


def unreachable_database(exc: BaseException) -> str | None:
    """One line for an operator when `exc` (or what caused it) is a database that cannot be reached."""
    seen = exc
    while seen is not None:
        text = str(seen)
        if type(seen).__name__ in ("OperationalError", "PoolTimeout") and UNREACHABLE.search(text):
            from django.conf import settings

            db = settings.DATABASES["default"]
            where = f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db.get('NAME')}"
            detail = " ".join((_connect_error() or text).split())[:300]
            return (
                f"The database at {where} could not be reached: {detail}\n"
                "Check DATABASE_URL (and WORKER_DATABASE_URL) and that PostgreSQL is running there."
            )
        seen = seen.__cause__ or seen.__context__
    return None


def _connect_error() -> str | None:
    """Why a connection cannot be made, asked once more without the pool (it says only that it timed out)."""
    import psycopg
    from django.db import connection

    try:
        psycopg.connect(**connection.get_connection_params(), connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        return str(exc)
    return None


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except Exception as exc:
        message = unreachable_database(exc)
        if message is None:
            raise
        sys.stderr.write(message + "\n")  # not a traceback of the pool's internals
        sys.exit(1)


if __name__ == "__main__":
    main()
