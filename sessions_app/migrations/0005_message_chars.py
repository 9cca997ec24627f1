"""The size of a session's history kept on its row, so a turn no longer sums its messages to plan a summary."""

from django.db import migrations, models

# Counted once from the messages; from here on the turn's own UPDATE keeps message_chars, and a
# summary records the session's count when it is planned.
BACKFILL = [
    "UPDATE sessions_app_chatsession s SET message_chars = m.chars"
    " FROM (SELECT session_id, sum(length(content)) AS chars FROM sessions_app_message GROUP BY session_id) m"
    " WHERE m.session_id = s.id",
    "UPDATE sessions_app_sessionsummary sm SET covered_chars = coalesce(("
    "SELECT sum(length(content)) FROM sessions_app_message"
    ' WHERE session_id = sm.session_id AND "order" < sm.covers_messages), 0)',
]


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0004_message_search_index")]

    operations = [
        migrations.AddField(
            model_name="chatsession",
            name="message_chars",
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="sessionsummary",
            name="covered_chars",
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
    ]
