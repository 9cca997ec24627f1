"""Each call and each debit stops keeping up single-column indexes that a composite index already covers.

The optional references (initiator, refunded debit, progress price) are indexed where set only."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0015_credithold_stream_progress"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Only the single-column indexes go: the foreign key constraints stay as they are (Django's
        # AlterField would drop and re-add each one, checking every row of the table again).
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="credithold",
                    name="progress_price",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="billing.modelprice",
                    ),
                ),
                migrations.AlterField(
                    model_name="credittransaction",
                    name="initiated_by",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="initiated_transactions",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="credittransaction",
                    name="refund_of",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="refunds",
                        to="billing.credittransaction",
                    ),
                ),
                migrations.AlterField(
                    model_name="credittransaction",
                    name="wallet",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="transactions",
                        to="billing.wallet",
                    ),
                ),
                migrations.AlterField(
                    model_name="llmcallevent",
                    name="user",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="llm_calls",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    [
                        "DROP INDEX IF EXISTS billing_credithold_progress_price_id_8d516db4",
                        "DROP INDEX IF EXISTS billing_credittransaction_initiated_by_id_618bd75d",
                        "DROP INDEX IF EXISTS billing_credittransaction_refund_of_id_3ab14de7",
                        "DROP INDEX IF EXISTS billing_credittransaction_wallet_id_f5de0d74",
                        "DROP INDEX IF EXISTS billing_llmcallevent_user_id_7ca85cb5",
                    ],
                    reverse_sql=[
                        "CREATE INDEX IF NOT EXISTS billing_credithold_progress_price_id_8d516db4 ON billing_credithold (progress_price_id)",
                        "CREATE INDEX IF NOT EXISTS billing_credittransaction_initiated_by_id_618bd75d ON billing_credittransaction (initiated_by_id)",
                        "CREATE INDEX IF NOT EXISTS billing_credittransaction_refund_of_id_3ab14de7 ON billing_credittransaction (refund_of_id)",
                        "CREATE INDEX IF NOT EXISTS billing_credittransaction_wallet_id_f5de0d74 ON billing_credittransaction (wallet_id)",
                        "CREATE INDEX IF NOT EXISTS billing_llmcallevent_user_id_7ca85cb5 ON billing_llmcallevent (user_id)",
                    ],
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="credithold",
            index=models.Index(
                condition=models.Q(("progress_price__isnull", False)),
                fields=["progress_price"],
                name="credithold_progress_price_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="credittransaction",
            index=models.Index(
                condition=models.Q(("initiated_by__isnull", False)),
                fields=["initiated_by"],
                name="credittx_initiated_by_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="credittransaction",
            index=models.Index(
                condition=models.Q(("refund_of__isnull", False)),
                fields=["refund_of"],
                name="credittx_refund_of_idx",
            ),
        ),
    ]
