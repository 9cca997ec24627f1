"""Each message carries its session's owner, so the search index can be keyed by user (0009).

Adds the column, fills it from the sessions in one UPDATE (a table of 10M messages takes minutes and
holds its rows' locks meanwhile: run it in a quiet hour), then makes it NOT NULL. No foreign key
constraint: the session's own ties the message to its owner (models.Message.owner).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

FILL_OWNERS = """
UPDATE sessions_app_message AS message
   SET owner_id = chat_session.owner_id
  FROM sessions_app_chatsession AS chat_session
 WHERE chat_session.id = message.session_id AND message.owner_id IS NULL
"""


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0007_call_links_without_db_constraint"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="owner",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunSQL(FILL_OWNERS, reverse_sql=migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="message",
            name="owner",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
