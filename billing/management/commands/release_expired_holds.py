"""manage.py release_expired_holds: close holds left open past their expiry (cron-safe, idempotent).

A hold is given back, or charged with the progress its stream recorded (billing.services.holds).
"""

from django.core.management.base import BaseCommand

from billing.services import release_expired_holds


class Command(BaseCommand):
    help = (
        "Release every credit hold past its expiry (left open by a crashed worker); a streamed call's "
        "hold is charged with the progress it recorded, capped at the hold."
    )

    def handle(self, *args, **options):
        count = release_expired_holds()
        self.stdout.write(self.style.SUCCESS(f"Released {count} expired hold{'s' if count != 1 else ''}."))
