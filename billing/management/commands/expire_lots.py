"""manage.py expire_lots: write off what is left of each credit lot past its expiry (cron-safe, idempotent)."""

from django.core.management.base import BaseCommand

from billing.services.lots import expire_lots


class Command(BaseCommand):
    help = "Write one expiry ledger row per credit lot past its expiry for what is left of it (once per lot)."

    def handle(self, *args, **options):
        count = expire_lots()
        self.stdout.write(self.style.SUCCESS(f"Expired {count} lot{'s' if count != 1 else ''}."))
