"""manage.py rebuild_usage_rollup: recount the usage rollups from the events (after a time zone change; safe to rerun)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing.models import DetachedCallMonth
from billing.rollup import REBUILD_STEPS, rebuild_usage_rollup
from core.progress import Progress


class Command(BaseCommand):
    help = (
        "Rebuild the usage rollups from every LLM call event, in REPORT_TIME_ZONE: the (day, user, model) "
        "rows, the (day, user shard) rows and the users' active-day bitmaps. Every recorded call keeps them "
        "current; run this after changing REPORT_TIME_ZONE (`manage.py check --database default` says when: "
        "the check reads the database, which plain `check` does not)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--drop-detached-months",
            action="store_true",
            help="Rebuild even though months of events were detached: their figures leave the reports.",
        )

    def handle(self, *args, drop_detached_months=False, **options):
        detached = [
            f"{m:%Y-%m}" for m in DetachedCallMonth.objects.order_by("month").values_list("month", flat=True)
        ]
        if detached and not drop_detached_months:
            # The rollups are the only figures left for those months: a recount from the events would erase them.
            raise CommandError(
                f"The call events of {', '.join(detached)} were detached (detach_call_events): a rebuild would "
                "remove their usage from every report. Attach their partitions again first, or pass "
                "--drop-detached-months to accept it."
            )
        with Progress(self.stderr, "rebuild steps done", total=REBUILD_STEPS, rate=False) as progress:
            rows = rebuild_usage_rollup(on_step=progress.advance)
        self.stdout.write(
            self.style.SUCCESS(f"Usage rollup rebuilt: {rows} rows, days cut in {settings.REPORT_TIME_ZONE}.")
        )
