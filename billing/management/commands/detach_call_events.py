"""manage.py detach_call_events: retention for call events, one past month exported to CSV and detached."""

from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from billing.exceptions import BillingError
from billing.partitions import detach_call_month
from core.progress import Progress


def _month(value: str):
    try:
        return datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise CommandError(f"--month {value!r} is not a month: write it YYYY-MM, e.g. 2026-01.") from None


class Command(BaseCommand):
    help = (
        "Export one past month of call events to CSV, then detach its partition (--drop: and drop it). "
        "Usage reports keep the month: they read the rollups."
    )

    def add_arguments(self, parser):
        parser.add_argument("--month", required=True, help="The UTC month to detach, YYYY-MM.")
        parser.add_argument(
            "--export",
            required=True,
            help=(
                "The CSV file to write (must not exist): an archive for attach_call_events, values as stored "
                "(not made safe for spreadsheets; docs/scaling-data.md)."
            ),
        )
        parser.add_argument(
            "--drop", action="store_true", help="Drop the detached table too (the CSV is then the only copy)."
        )

    def handle(self, *args, month, export, drop, **options):
        progress = Progress(self.stderr, "call events exported", unit="rows")

        def exported(rows: int, total: int) -> None:
            progress.total = (
                total  # call events, as the summary counts them (the export leaves out its header)
            )
            progress.advance(rows)

        try:
            with progress:
                detached = detach_call_month(
                    month=_month(month), export_to=export, drop=drop, on_rows=exported
                )
        except BillingError as exc:
            raise CommandError(exc.message) from None
        record = detached.record
        kept = "dropped" if record.dropped else f"kept as table {record.partition}"
        self.stdout.write(
            self.style.SUCCESS(
                f"{record.month:%Y-%m}: {record.rows} call events exported to {record.exported_to} "
                f"in {detached.export_seconds:.1f} s, partition detached in "
                f"{detached.detach_seconds * 1000:.0f} ms ({kept})."
            )
        )
