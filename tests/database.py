"""The test database's schema and session, for tests that migrate it back and forth, look at its indexes
or read a setting a statement left."""

from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def leaf_migrations() -> list[tuple[str, str]]:
    """Every app's last migration: where a test that migrated back returns to."""
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def migrate(targets: list[tuple[str, str]]) -> None:
    """Migrate the test database to `targets` (app label, migration name), as `manage.py migrate` does."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def indexes_of(table: str) -> set[str]:
    """The names of `table`'s indexes."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [table])
        return {name for (name,) in cursor.fetchall()}


def synchronous_commit() -> str:
    """The session's synchronous_commit, as the current transaction sees it."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def in_its_own_transaction(statement) -> str:
    """Run `statement()` as Django runs it on its own (autocommit), inside a transaction opened on the
    connection underneath, and return the synchronous_commit it leaves for its own commit; then roll back."""
    connection.ensure_connection()
    raw = connection.connection
    raw.execute("BEGIN")
    try:
        statement()
        return synchronous_commit()
    finally:
        raw.execute("ROLLBACK")
