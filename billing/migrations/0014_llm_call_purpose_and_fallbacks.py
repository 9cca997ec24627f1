"""Model calls say why they were made (purpose) and whether a fallback stood in for the answer.

The rollups count fallbacks (`summary_fallbacks`) and split the cost by purpose (`tool_followup_cost`,
`summary_cost`; the rest is chat), and are recounted from the events at the end (the
recount 0011 used to run; about 70 s per 10M events). The (day, user, model) covering index is
rebuilt to include the new figure, so the usage summary keeps its index-only scan.
"""

from django.conf import settings
from django.db import migrations, models

_INDEX = (
    "CREATE UNIQUE INDEX usagedaily_day_user_model_uniq ON billing_usagedaily (day, user_id, model) "
    "INCLUDE (calls, failed_calls, input_tokens, output_tokens, cost, shadow_refusals{})"
)
COVERING_INDEX = _INDEX.format(", summary_fallbacks, tool_followup_cost, summary_cost")
PREVIOUS_COVERING_INDEX = _INDEX.format("")
DROP_INDEX = "DROP INDEX IF EXISTS usagedaily_day_user_model_uniq"


def recount(apps, schema_editor):
    # Moved to 0017, which adds a rollup column (api_cost): the live module's rebuild writes every
    # rollup column, so it runs after the last of them exists.
    pass


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0013_wallet_event"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="llmcallevent",
            name="purpose",
            field=models.CharField(
                choices=[("chat", "chat"), ("tool_followup", "tool follow-up"), ("summary", "summary")],
                db_default="chat",
                default="chat",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="llmcallevent",
            name="used_fallback",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name="usagedaily",
            name="summary_fallbacks",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="usagedayshard",
            name="summary_fallbacks",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="usagedaily",
            name="tool_followup_cost",
            field=models.DecimalField(db_default=0, decimal_places=6, default=0, max_digits=20),
        ),
        migrations.AddField(
            model_name="usagedaily",
            name="summary_cost",
            field=models.DecimalField(db_default=0, decimal_places=6, default=0, max_digits=20),
        ),
        migrations.AddField(
            model_name="usagedayshard",
            name="tool_followup_cost",
            field=models.DecimalField(db_default=0, decimal_places=6, default=0, max_digits=20),
        ),
        migrations.AddField(
            model_name="usagedayshard",
            name="summary_cost",
            field=models.DecimalField(db_default=0, decimal_places=6, default=0, max_digits=20),
        ),
        migrations.AddConstraint(
            model_name="llmcallevent",
            constraint=models.CheckConstraint(
                condition=models.Q(("purpose__in", ["chat", "tool_followup", "summary"])),
                name="llmcall_purpose_known",
            ),
        ),
        migrations.AddConstraint(
            model_name="llmcallevent",
            constraint=models.CheckConstraint(
                condition=models.Q(("used_fallback", False), ("cost", 0), _connector="OR"),
                name="llmcall_fallback_costs_nothing",
            ),
        ),
        migrations.RunSQL(
            sql=[DROP_INDEX, COVERING_INDEX],
            reverse_sql=[DROP_INDEX, PREVIOUS_COVERING_INDEX],
        ),
        migrations.RunPython(recount, migrations.RunPython.noop),
    ]
