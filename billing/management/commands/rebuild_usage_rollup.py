"""manage.py rebuild_usage_rollup: recount the usage rollups from the events (backfill; safe to rerun)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing.rollup import enabled, rebuild_usage_rollup


class Command(BaseCommand):
    help = (
        "Rebuild the usage rollups from every LLM call event, in REPORT_TIME_ZONE: the (day, user, model) "
        "rows, the (day, user shard) rows and the users' active-day bitmaps. Run it once after deploying "
        "a migration that adds a rollup table (billing 0009, 0010) and again after changing REPORT_TIME_ZONE."
    )

    def handle(self, *args, **options):
        if not enabled():
            raise CommandError("The usage rollup is kept on PostgreSQL only; SQLite reports scan the events.")
        rows = rebuild_usage_rollup()
        self.stdout.write(
            self.style.SUCCESS(f"Usage rollup rebuilt: {rows} rows, days cut in {settings.REPORT_TIME_ZONE}.")
        )
