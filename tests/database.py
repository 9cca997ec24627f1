"""The test database's schema, for tests that migrate it back and forth or look at its indexes."""

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
