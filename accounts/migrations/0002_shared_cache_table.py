"""The database cache's table (CACHE_URL's default, dbcache://creditdesk_cache), so `migrate` is all a new checkout runs.

Nothing is created when CACHE_URL names another backend (Redis, memory).
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(create_cache_tables, migrations.RunPython.noop, elidable=True)]
