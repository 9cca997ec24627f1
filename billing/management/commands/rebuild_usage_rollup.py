"""manage.py rebuild_usage_rollup: recount the usage rollups from the events (after a time zone change; safe to rerun)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from billing.rollup import rebuild_usage_rollup


class Command(BaseCommand):
    help = (
        "Rebuild the usage rollups from every LLM call event, in REPORT_TIME_ZONE: the (day, user, model) "
        "rows, the (day, user shard) rows and the users' active-day bitmaps. Every recorded call keeps them "
        "current; run this after changing REPORT_TIME_ZONE (`manage.py check` says when)."
    )

    def handle(self, *args, **options):
        rows = rebuild_usage_rollup()
        self.stdout.write(
            self.style.SUCCESS(f"Usage rollup rebuilt: {rows} rows, days cut in {settings.REPORT_TIME_ZONE}.")
        )
