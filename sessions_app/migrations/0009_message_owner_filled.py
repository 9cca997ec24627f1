"""The existing messages get their session's owner, in batches, then the column becomes NOT NULL.

Not atomic, so that the table stays writable throughout: each batch of BATCH ids is its own
transaction (a table of 10M messages takes a few minutes; interrupted, it resumes where the rows are
still empty). NOT NULL is then proved by a CHECK constraint validated without blocking writes, so
that SET NOT NULL need not scan the table under its exclusive lock (PostgreSQL 12+).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

BATCH = 50_000

FILL_OWNERS = """
UPDATE sessions_app_message AS message
   SET owner_id = chat_session.owner_id
  FROM sessions_app_chatsession AS chat_session
 WHERE chat_session.id = message.session_id
   AND message.id >= %s AND message.id < %s
   AND message.owner_id IS NULL
"""

NOT_NULL = [
    "ALTER TABLE sessions_app_message ADD CONSTRAINT message_owner_set CHECK (owner_id IS NOT NULL) NOT VALID",
    "ALTER TABLE sessions_app_message VALIDATE CONSTRAINT message_owner_set",
    "ALTER TABLE sessions_app_message ALTER COLUMN owner_id SET NOT NULL",
    "ALTER TABLE sessions_app_message DROP CONSTRAINT message_owner_set",
]


def fill_owners(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM sessions_app_message WHERE owner_id IS NULL")
        low, high = cursor.fetchone()
        if low is None:
            return
        for start in range(low, high + 1, BATCH):
            cursor.execute(FILL_OWNERS, [start, start + BATCH])


OWNER = dict(
    db_constraint=False,
    db_index=False,
    on_delete=django.db.models.deletion.DO_NOTHING,
    related_name="+",
    to=settings.AUTH_USER_MODEL,
)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("sessions_app", "0008_message_owner")]

    operations = [
        migrations.RunPython(fill_owners, migrations.RunPython.noop),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    NOT_NULL,
                    reverse_sql="ALTER TABLE sessions_app_message ALTER COLUMN owner_id DROP NOT NULL",
                )
            ],
            state_operations=[
                migrations.AlterField(model_name="message", name="owner", field=models.ForeignKey(**OWNER))
            ],
        ),
    ]
