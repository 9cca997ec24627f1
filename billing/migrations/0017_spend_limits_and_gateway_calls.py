"""Spend limits (an API key's, and the wallet's spending caps), gateway calls (purpose `api`, their key
and end user), cap alerts as wallet events, and the rollups' `api_cost` figure.

The (day, user, model) covering index is rebuilt to include the new figure, and the rollups are
recounted from the events (the recount 0014 used to run; since 0027, there).
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

_INDEX = (
    "CREATE UNIQUE INDEX usagedaily_day_user_model_uniq ON billing_usagedaily (day, user_id, model) "
    "INCLUDE (calls, failed_calls, input_tokens, output_tokens, cost, shadow_refusals, "
    "summary_fallbacks, tool_followup_cost, summary_cost{})"
)
COVERING_INDEX = _INDEX.format(", api_cost")
PREVIOUS_COVERING_INDEX = _INDEX.format("")
DROP_INDEX = "DROP INDEX IF EXISTS usagedaily_day_user_model_uniq"


def recount(apps, schema_editor):
    # The live module's rebuild writes every rollup table and column, so it runs after the last one
    # exists: 0027 (the per-key rows) recounts when no build is recorded, as here from now on.
    apps.get_model("billing", "UsageRollupState").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0016_single_column_indexes_only_where_needed"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="SpendLimit",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("key", "API key limit"),
                            ("user_cap", "spending cap (the user's)"),
                            ("staff_cap", "spending cap (staff)"),
                        ],
                        max_length=16,
                    ),
                ),
                ("amount", models.DecimalField(blank=True, decimal_places=6, max_digits=20, null=True)),
                (
                    "period",
                    models.CharField(
                        blank=True,
                        choices=[("day", "day"), ("week", "week"), ("month", "month")],
                        max_length=8,
                        null=True,
                    ),
                ),
                ("period_start", models.DateField(blank=True, null=True)),
                ("spent", models.DecimalField(decimal_places=6, default=0, max_digits=20)),
                ("held", models.DecimalField(decimal_places=6, default=0, max_digits=20)),
                ("alerted_percent", models.PositiveSmallIntegerField(default=0)),
                ("alerted_period_start", models.DateField(blank=True, null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "verbose_name": "spend limit",
                "db_table": "billing_spendlimit",
            },
        ),
        migrations.RemoveConstraint(
            model_name="llmcallevent",
            name="llmcall_purpose_known",
        ),
        migrations.RemoveConstraint(
            model_name="walletevent",
            name="walletevent_type_known",
        ),
        migrations.AddField(
            model_name="llmcallevent",
            name="end_user",
            field=models.CharField(blank=True, db_default="", default="", max_length=256),
        ),
        migrations.AddField(
            model_name="usagedaily",
            name="api_cost",
            field=models.DecimalField(db_default=0, decimal_places=6, default=0, max_digits=20),
        ),
        migrations.AddField(
            model_name="usagedayshard",
            name="api_cost",
            field=models.DecimalField(db_default=0, decimal_places=6, default=0, max_digits=20),
        ),
        migrations.AddField(
            model_name="walletevent",
            name="percent",
            field=models.PositiveSmallIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="credithold",
            name="progress_purpose",
            field=models.CharField(
                blank=True,
                choices=[
                    ("chat", "chat"),
                    ("tool_followup", "tool follow-up"),
                    ("summary", "summary"),
                    ("api", "api"),
                ],
                max_length=16,
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="llmcallevent",
            name="purpose",
            field=models.CharField(
                choices=[
                    ("chat", "chat"),
                    ("tool_followup", "tool follow-up"),
                    ("summary", "summary"),
                    ("api", "api"),
                ],
                db_default="chat",
                default="chat",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="walletevent",
            name="type",
            field=models.CharField(
                choices=[
                    ("wallet.low_balance", "wallet.low_balance"),
                    ("wallet.depleted", "wallet.depleted"),
                    ("wallet.replenished", "wallet.replenished"),
                    ("wallet.spend_cap_threshold", "wallet.spend_cap_threshold"),
                ],
                max_length=32,
            ),
        ),
        migrations.AddConstraint(
            model_name="walletevent",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "type__in",
                        [
                            "wallet.low_balance",
                            "wallet.depleted",
                            "wallet.replenished",
                            "wallet.spend_cap_threshold",
                        ],
                    )
                ),
                name="walletevent_type_known",
            ),
        ),
        migrations.AddField(
            model_name="spendlimit",
            name="wallet",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="spend_limits",
                to="billing.wallet",
            ),
        ),
        migrations.AddField(
            model_name="credithold",
            name="spend_limit",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="holds",
                to="billing.spendlimit",
            ),
        ),
        migrations.AddField(
            model_name="llmcallevent",
            name="spend_limit",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="calls",
                to="billing.spendlimit",
            ),
        ),
        migrations.AddIndex(
            model_name="credithold",
            index=models.Index(
                condition=models.Q(("spend_limit__isnull", False)),
                fields=["spend_limit"],
                name="credithold_spend_limit_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="llmcallevent",
            index=models.Index(
                condition=models.Q(("spend_limit__isnull", False)),
                fields=["spend_limit", "created_at"],
                name="llmcall_spend_limit_idx",
            ),
        ),
        migrations.AddConstraint(
            model_name="llmcallevent",
            constraint=models.CheckConstraint(
                condition=models.Q(("purpose__in", ["chat", "tool_followup", "summary", "api"])),
                name="llmcall_purpose_known",
            ),
        ),
        migrations.AddIndex(
            model_name="spendlimit",
            index=models.Index(fields=["wallet", "kind"], name="spendlimit_wallet_kind_idx"),
        ),
        migrations.AddConstraint(
            model_name="spendlimit",
            constraint=models.CheckConstraint(
                condition=models.Q(("kind__in", ["key", "user_cap", "staff_cap"])),
                name="spendlimit_kind_known",
            ),
        ),
        migrations.AddConstraint(
            model_name="spendlimit",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("period__isnull", True), ("period__in", ["day", "week", "month"]), _connector="OR"
                ),
                name="spendlimit_period_known",
            ),
        ),
        migrations.AddConstraint(
            model_name="spendlimit",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount__isnull", True), ("amount__gte", 0), _connector="OR"),
                name="spendlimit_amount_non_negative",
            ),
        ),
        migrations.AddConstraint(
            model_name="spendlimit",
            constraint=models.CheckConstraint(
                condition=models.Q(("held__gte", 0)), name="spendlimit_held_non_negative"
            ),
        ),
        migrations.AddConstraint(
            model_name="spendlimit",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("kind", "key"),
                    models.Q(("amount__isnull", False), ("period__isnull", False)),
                    _connector="OR",
                ),
                name="spendlimit_cap_complete",
            ),
        ),
        migrations.AddConstraint(
            model_name="spendlimit",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "key"), _negated=True),
                fields=("wallet", "kind"),
                name="spendlimit_one_cap_per_kind",
            ),
        ),
        migrations.RunSQL(
            sql=[DROP_INDEX, COVERING_INDEX],
            reverse_sql=[DROP_INDEX, PREVIOUS_COVERING_INDEX],
        ),
        migrations.RunPython(recount, migrations.RunPython.noop),
    ]
