"""A turn stops keeping up single-column foreign key indexes that a composite index already covers."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0005_message_chars"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Only the single-column indexes go: the foreign key constraints stay as they are (Django's
        # AlterField would drop and re-add each one, checking every row of the table again).
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="chatsession",
                    name="owner",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="chat_sessions",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="session",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="messages",
                        to="sessions_app.chatsession",
                    ),
                ),
                migrations.AlterField(
                    model_name="turn",
                    name="session",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="turns",
                        to="sessions_app.chatsession",
                    ),
                ),
                migrations.AlterField(
                    model_name="turncall",
                    name="turn",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="calls",
                        to="sessions_app.turn",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    [
                        "DROP INDEX IF EXISTS sessions_app_chatsession_owner_id_e76090b8",
                        "DROP INDEX IF EXISTS sessions_app_message_session_id_a5aec9af",
                        "DROP INDEX IF EXISTS sessions_app_turn_session_id_21db3e6d",
                        "DROP INDEX IF EXISTS sessions_app_turncall_turn_id_7de73c1c",
                    ],
                    reverse_sql=[
                        "CREATE INDEX IF NOT EXISTS sessions_app_chatsession_owner_id_e76090b8 ON sessions_app_chatsession (owner_id)",
                        "CREATE INDEX IF NOT EXISTS sessions_app_message_session_id_a5aec9af ON sessions_app_message (session_id)",
                        "CREATE INDEX IF NOT EXISTS sessions_app_turn_session_id_21db3e6d ON sessions_app_turn (session_id)",
                        "CREATE INDEX IF NOT EXISTS sessions_app_turncall_turn_id_7de73c1c ON sessions_app_turncall (turn_id)",
                    ],
                ),
            ],
        ),
    ]
