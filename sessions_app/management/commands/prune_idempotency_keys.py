"""manage.py prune_idempotency_keys: forget turn Idempotency-Keys older than 24 hours (or more)."""

from django.core.management.base import BaseCommand, CommandError

from sessions_app import idempotency


class Command(BaseCommand):
    help = "Delete turn idempotency keys older than --older-than-hours (default and minimum 24)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than-hours",
            type=int,
            default=idempotency.KEEP_HOURS,
            dest="older_than_hours",
            help=f"Age in hours (at least {idempotency.KEEP_HOURS}); in-progress keys go only once abandoned.",
        )

    def handle(self, *args, older_than_hours: int, **options):
        try:
            deleted = idempotency.prune(older_than_hours=older_than_hours)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {deleted} turn idempotency keys older than {older_than_hours} hours."
            )
        )
