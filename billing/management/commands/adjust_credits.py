"""manage.py adjust_credits: correct a wallet by a signed amount from the shell, through the API's service."""

from django.core.management.base import BaseCommand

from billing import services
from billing.management.ledger_commands import (
    add_ledger_options,
    outcome,
    resolve_user,
    staff_initiator,
    write_row,
)
from core.money import format_money


class Command(BaseCommand):
    help = "Correct a user's wallet by a signed, non-zero amount (kind adjustment), attributed to staff."

    def add_arguments(self, parser):
        parser.add_argument("user", help="The wallet owner: id (all digits), email (contains @) or username.")
        parser.add_argument(
            "amount",
            help="Credits to add (e.g. 3) or, with a leading -, to remove (e.g. -3.5; no +); non-zero, "
            "abs <= 10000, <= 6 places.",
        )
        add_ledger_options(parser, verb="adjusting")

    def handle(self, *args, user, amount, reason, initiated_by, idempotency_key=None, **options):
        initiator = staff_initiator(initiated_by, what="adjust a wallet")
        owner = resolve_user(user)
        row = write_row(
            lambda: services.adjust(
                user=owner,
                amount=amount,
                reason=reason,
                initiated_by=initiator,
                idempotency_key=idempotency_key,
            )
        )
        message = outcome(
            row,
            verb="adjusted",
            done=f"Adjusted {owner.username}'s wallet by {format_money(row.amount)} (transaction {row.pk}).",
        )
        self.stdout.write(
            self.style.SUCCESS(f"{message} Balance after it: {format_money(row.balance_after)}")
        )
