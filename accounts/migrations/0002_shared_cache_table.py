"""The database cache's table (CACHE_URL's default, dbcache://creditdesk_cache), so `migrate` is all a new checkout runs.

Created whatever CACHE_URL says while migrating (the tests migrate with an in-memory cache, and a real
server started on the test database uses the default): an unused table costs nothing.
"""

from django.core.management.commands.createcachetable import Command as CreateCacheTable
from django.db import migrations

TABLE = "creditdesk_cache"


def create_cache_tables(apps, schema_editor):
    command = CreateCacheTable()
    command.verbosity = 0
    command.create_table(schema_editor.connection.alias, TABLE, dry_run=False)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(create_cache_tables, migrations.RunPython.noop, elidable=True)]
