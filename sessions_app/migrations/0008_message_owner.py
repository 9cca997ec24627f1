"""Each message carries its session's owner, so that the search index can be keyed by user (0010).

This step is quick (a nullable column, no rewrite) and leaves the table writable: the column, and a
trigger that fills it from the session for any insert that leaves it empty. The code of this release
writes it itself; the trigger covers the code still running while the release rolls out (its turns
keep working and their messages get an owner) and whatever else inserts messages. 0009 fills the
existing rows and makes the column NOT NULL.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

OWNER_FROM_SESSION = """
CREATE FUNCTION sessions_app_message_owner_from_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT owner_id INTO NEW.owner_id FROM sessions_app_chatsession WHERE id = NEW.session_id;
    RETURN NEW;
END
$$;
CREATE TRIGGER message_owner_from_session
    BEFORE INSERT ON sessions_app_message
    FOR EACH ROW WHEN (NEW.owner_id IS NULL)
    EXECUTE FUNCTION sessions_app_message_owner_from_session();
"""
NO_OWNER_FROM_SESSION = """
DROP TRIGGER message_owner_from_session ON sessions_app_message;
DROP FUNCTION sessions_app_message_owner_from_session();
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
        migrations.RunSQL(OWNER_FROM_SESSION, reverse_sql=NO_OWNER_FROM_SESSION),
    ]
