"""Stream progress on credit holds: what an open call has used so far, so a dead worker's hold is charged.

Nullable columns (no rewrite of the table); the check constraint scans it once, every row null.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0014_llm_call_purpose_and_fallbacks"),
    ]

    operations = [
        migrations.AddField(
            model_name="credithold",
            name="progress_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="credithold",
            name="progress_input_tokens",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="credithold",
            name="progress_output_tokens",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="credithold",
            name="progress_price",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="billing.modelprice",
            ),
        ),
        migrations.AddField(
            model_name="credithold",
            name="progress_provider",
            field=models.CharField(blank=True, max_length=32, null=True),
        ),
        migrations.AddField(
            model_name="credithold",
            name="progress_purpose",
            field=models.CharField(
                blank=True,
                choices=[("chat", "chat"), ("tool_followup", "tool follow-up"), ("summary", "summary")],
                max_length=16,
                null=True,
            ),
        ),
        migrations.AddConstraint(
            model_name="credithold",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("progress_at__isnull", True),
                    models.Q(
                        ("progress_input_tokens__isnull", False),
                        ("progress_output_tokens__isnull", False),
                        ("progress_price__isnull", False),
                        ("progress_provider__isnull", False),
                        ("progress_purpose__isnull", False),
                    ),
                    _connector="OR",
                ),
                name="credithold_progress_complete",
            ),
        ),
    ]
