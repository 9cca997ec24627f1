"""The throttles' counters: one row per key, UNLOGGED (a crash may forget counts, never credits; no WAL to write)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="RateLimit",
            fields=[
                ("key", models.CharField(max_length=200, primary_key=True, serialize=False)),
                ("tat", models.DateTimeField()),
            ],
            options={
                "verbose_name": "rate limit",
            },
        ),
        # Counters need no durability: an unlogged table's writes skip the WAL (and its flush at commit).
        migrations.RunSQL(
            "ALTER TABLE core_ratelimit SET UNLOGGED",
            reverse_sql="ALTER TABLE core_ratelimit SET LOGGED",
        ),
    ]
