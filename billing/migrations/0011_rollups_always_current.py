"""The usage rollups are current from here on: every recorded call keeps them, so this backfill is the last scan.

Readers no longer fall back to scanning events (there is one reader per report question), so the rollups
are recounted here from every event in REPORT_TIME_ZONE. On a large ledger this takes a while (about
70 s per 10M events); run it during the deploy like any migration.
"""

from django.db import migrations


def recount(apps, schema_editor):
    # The recount runs the live module's rebuild, which writes every rollup column of the current
    # code, so it must run after the last migration that adds one: it moved to
    # 0014_llm_call_purpose_and_fallbacks (a database that already ran it here recounts once more there).
    pass


class Migration(migrations.Migration):
    dependencies = [("billing", "0010_usage_day_shards_and_user_bitmaps")]

    operations = [migrations.RunPython(recount, migrations.RunPython.noop)]
