"""Django's admin log (django_admin_log) indexed by the object an entry is about, built CONCURRENTLY.

The console's customer page lists the staff actions on a customer, their wallet and the ledger rows it
shows, and the admin's History page an object's entries: both ask by (content type, object id), which
Django indexes by content type alone, so each read every entry of those types (67 ms at 1M entries,
growing with every grant staff make). The table is admin's; the index is this console's need.

Not atomic (CREATE INDEX CONCURRENTLY cannot run in a transaction); staff actions stay writable while
it builds. If it is interrupted, drop the INVALID index (`DROP INDEX admin_log_object_idx`) and migrate again.
"""

from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("web", "0003_console_groups_read_api_keys"),
        ("admin", "0003_logentry_add_action_flag_choices"),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS admin_log_object_idx"
            " ON django_admin_log (content_type_id, object_id)",
            reverse_sql="DROP INDEX CONCURRENTLY IF EXISTS admin_log_object_idx",
        ),
    ]
