"""The turn's links to billing's call events lose their database constraint before billing partitions
the events by month (a foreign key to a partitioned table must include its partition key); the link
is kept by the turn's own transaction. docs/scaling-data.md."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0023_call_event_links_without_db_constraint"),
        ("sessions_app", "0006_composite_indexes_cover_foreign_keys"),
    ]
    # The conversion refuses to run while any foreign key still points at the events table.
    run_before = [("billing", "0024_partition_call_events_by_month")]

    operations = [
        migrations.AlterField(
            model_name="sessionsummary",
            name="llm_call",
            field=models.OneToOneField(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="session_summary",
                to="billing.llmcallevent",
            ),
        ),
        migrations.AlterField(
            model_name="turn",
            name="llm_call",
            field=models.OneToOneField(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="turn",
                to="billing.llmcallevent",
            ),
        ),
        migrations.AlterField(
            model_name="turncall",
            name="llm_call",
            field=models.OneToOneField(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="turn_call",
                to="billing.llmcallevent",
            ),
        ),
    ]
