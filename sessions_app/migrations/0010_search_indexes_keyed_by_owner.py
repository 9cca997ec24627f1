"""The search tool's indexes keyed by owner first (btree_gin), built CONCURRENTLY, then the old ones dropped.

The old indexes were keyed by words alone: a search for a common word read every user's matching
rows and kept its own user's. Keyed by (owner, words), it reads its user's rows only, however many
other users there are.

Not atomic (CREATE INDEX CONCURRENTLY cannot run in a transaction); messages and files stay writable
while the indexes build. If it is interrupted, drop the INVALID index it leaves
(`DROP INDEX message_owner_search_idx` or `userfile_owner_search_idx`) and migrate again. btree_gin
is a trusted extension (PostgreSQL 13+): the database's owner may create it.
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.contrib.postgres.operations import (
    AddIndexConcurrently,
    BtreeGinExtension,
    RemoveIndexConcurrently,
)
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("sessions_app", "0009_message_owner_filled")]

    operations = [
        BtreeGinExtension(),
        AddIndexConcurrently(
            model_name="message",
            index=django.contrib.postgres.indexes.GinIndex(
                models.F("owner"),
                django.contrib.postgres.search.SearchVector("content", config="english"),
                name="message_owner_search_idx",
            ),
        ),
        AddIndexConcurrently(
            model_name="userfile",
            index=django.contrib.postgres.indexes.GinIndex(
                fields=["owner", "search_vector"], name="userfile_owner_search_idx"
            ),
        ),
        RemoveIndexConcurrently(model_name="message", name="message_content_search_idx"),
        RemoveIndexConcurrently(model_name="userfile", name="userfile_search_idx"),
    ]
