"""The search tool's index over every message's text, built CONCURRENTLY: messages stay writable meanwhile.

Not atomic (CREATE INDEX CONCURRENTLY cannot run in a transaction). On a large table it takes a while;
if it is interrupted, drop the INVALID index it leaves (`DROP INDEX message_content_search_idx`) and
migrate again.
"""

import django.contrib.postgres.search
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("sessions_app", "0003_files_tools_calls_summaries")]

    operations = [
        AddIndexConcurrently(
            model_name="message",
            index=GinIndex(
                django.contrib.postgres.search.SearchVector("content", config="english"),
                name="message_content_search_idx",
            ),
        ),
    ]
