"""manage.py release_expired_holds: give back holds left open past their expiry (cron-safe, idempotent)."""

from django.core.management.base import BaseCommand

from billing.services import release_expired_holds


class Command(BaseCommand):
    help = "Release every credit hold past CREDIT_HOLD_TTL_SECONDS (left open by a crashed worker)."

    def handle(self, *args, **options):
        count = release_expired_holds()
        self.stdout.write(self.style.SUCCESS(f"Released {count} expired hold{'s' if count != 1 else ''}."))
