"""manage.py issue_allowances: issue the current period's allowance lots not yet issued (cron-safe, once per user and period)."""

from django.core.management.base import BaseCommand

from billing.services.allowances import issue_allowances


class Command(BaseCommand):
    help = "Issue each active allowance to each assigned user for the current period, once."

    def handle(self, *args, **options):
        count = issue_allowances()
        self.stdout.write(self.style.SUCCESS(f"Issued {count} allowance{'s' if count != 1 else ''}."))
