"""A stream's hold keeps the unit prices its call was reserved at, with its progress.

A hold whose worker died is charged at expiry from its progress (release_expired_holds). It named
its price row only, and staff edit a price row in place, so such a call was charged at whatever
the row said at the sweep, not at the price it ran at. Nullable: progress recorded before this
migration (by a release still running) has none, and is charged at the row's prices as before.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0028_spend_limits_read_after_the_wallet_lock"),
    ]

    operations = [
        migrations.AddField(
            model_name="credithold",
            name="progress_input_price_per_1k",
            field=models.DecimalField(blank=True, decimal_places=6, max_digits=20, null=True),
        ),
        migrations.AddField(
            model_name="credithold",
            name="progress_output_price_per_1k",
            field=models.DecimalField(blank=True, decimal_places=6, max_digits=20, null=True),
        ),
    ]
