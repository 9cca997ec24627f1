"""Delete expired API tokens (they already fail authentication; this keeps the table small)."""

from django.core.management.base import BaseCommand

from accounts.services import purge_expired_tokens


class Command(BaseCommand):
    help = "Delete every expired API token."

    def handle(self, *args, **options):
        count = purge_expired_tokens()
        self.stdout.write(self.style.SUCCESS(f"Deleted {count} expired token(s)."))
