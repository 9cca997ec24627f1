"""manage.py refund_credits: refund all or part of a debit from the shell, through the API's service."""

from django.core.management.base import BaseCommand, CommandError

from billing import services
from billing.management.ledger_commands import add_ledger_options, outcome, staff_initiator, write_row
from billing.models import CreditTransaction
from core.api_fields import id_from_text
from core.money import format_money


class Command(BaseCommand):
    help = "Refund a debit (all that is left of it, or --amount), as a new refund row attributed to staff."

    def add_arguments(self, parser):
        parser.add_argument("transaction", help="The id of the debit to refund.")
        parser.add_argument("--amount", help="Credits to refund (default: all that is left refundable).")
        add_ledger_options(parser, verb="refunding")

    def handle(self, *args, transaction, amount=None, reason, initiated_by, idempotency_key=None, **options):
        initiator = staff_initiator(initiated_by, what="refund credits")
        pk = id_from_text(transaction)
        debit = CreditTransaction.objects.filter(pk=pk).first() if pk is not None else None
        if debit is None:
            raise CommandError(f"No ledger transaction with id {transaction!r}.")
        row = write_row(
            lambda: services.refund(
                debit=debit,
                amount=amount,
                reason=reason,
                initiated_by=initiator,
                idempotency_key=idempotency_key,
            )
        )
        message = outcome(
            row,
            verb="refunded",
            done=f"Refunded {format_money(row.amount)} credits of debit {debit.pk} (transaction {row.pk}).",
        )
        self.stdout.write(
            self.style.SUCCESS(f"{message} Balance after it: {format_money(row.balance_after)}")
        )
