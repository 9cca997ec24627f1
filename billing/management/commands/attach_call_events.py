"""manage.py attach_call_events: a month detached by detach_call_events (without --drop) attached again."""

from django.core.management.base import BaseCommand, CommandError

from billing.exceptions import BillingError
from billing.management.commands.detach_call_events import _month
from billing.partitions import attach_call_month


class Command(BaseCommand):
    help = (
        "Attach again a month of call events that detach_call_events kept as a table (not --drop), "
        "and forget it was detached; also clears the record of a month attached by hand."
    )

    def add_arguments(self, parser):
        parser.add_argument("--month", required=True, help="The UTC month to attach, YYYY-MM.")

    def handle(self, *args, month, **options):
        try:
            done = attach_call_month(month=_month(month))
        except BillingError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.style.SUCCESS(done))
