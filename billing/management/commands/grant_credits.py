"""manage.py grant_credits: grant credits from the shell, through the same service as the API."""

from django.core.management.base import BaseCommand

from billing import services
from billing.management.ledger_commands import (
    add_ledger_options,
    outcome,
    resolve_user,
    staff_initiator,
    write_row,
)
from billing.selectors import wallet_summary
from core.money import format_money


class Command(BaseCommand):
    help = "Grant credits to a user's wallet, attributed to a staff user."

    def add_arguments(self, parser):
        parser.add_argument("user", help="The recipient: id (all digits), email (contains @) or username.")
        parser.add_argument("amount", help="Credits to grant: > 0 and <= 10000, at most 6 decimal places.")
        add_ledger_options(parser, verb="granting")
        parser.add_argument(
            "--expires-at",
            dest="expires_at",
            help="When what is left of the credits expires: ISO 8601, in the future (default: never).",
        )
        parser.add_argument("--priority", help="0-100, default 50: charges burn lower numbers first.")
        parser.add_argument("--category", help="promotional (the default) or paid.")

    def handle(
        self,
        *args,
        user,
        amount,
        reason,
        initiated_by,
        idempotency_key=None,
        expires_at=None,
        priority=None,
        category=None,
        **options,
    ):
        initiator = staff_initiator(initiated_by, what="grant credits")
        recipient = resolve_user(user)
        row = write_row(
            lambda: services.grant(
                user=recipient,
                amount=amount,
                reason=reason,
                initiated_by=initiator,
                idempotency_key=idempotency_key,
                expires_at=expires_at,
                priority=priority,
                category=category,
            )
        )
        message = outcome(
            row,
            verb="granted",
            done=f"Granted {format_money(row.amount)} credits to {recipient.username} (transaction {row.pk}).",
        )
        # A replay says the wallet's balance now, as a first grant says it right after that grant.
        balance = wallet_summary(user=recipient).balance if row.replayed else row.balance_after
        self.stdout.write(self.style.SUCCESS(f"{message} New balance: {format_money(balance)}"))
