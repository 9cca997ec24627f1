"""manage.py grant_credits: grant credits from the shell, through the same service as the API."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import users_matching
from billing import services
from billing.exceptions import BillingError
from billing.money import format_money
from billing.selectors import wallet_summary


def resolve_user(ref: str):
    """A user by id (all digits), email (contains @, must be unambiguous) or username."""
    matches = users_matching(ref)
    if not matches:
        raise CommandError(f"No user matches {ref!r} (give an id, an email or a username).")
    if len(matches) > 1:
        raise CommandError(
            f"The email {ref!r} belongs to more than one user; give the username or id instead."
        )
    return matches[0]


def staff_initiator(username: str, *, what: str = "grant credits"):
    """The active staff user named `username`, to record as the initiator, or a one-line CommandError."""
    initiator = get_user_model().objects.filter(username=username).first()
    if initiator is None:
        raise CommandError(f"No user named {username!r} to record as the initiator.")
    if not initiator.is_staff or not initiator.is_active:
        raise CommandError(f"{username!r} is not an active staff user; only staff can {what}.")
    return initiator


class Command(BaseCommand):
    help = "Grant credits to a user's wallet, attributed to a staff user."

    def add_arguments(self, parser):
        parser.add_argument("user", help="The recipient: id (all digits), email (contains @) or username.")
        parser.add_argument("amount", help="Credits to grant: > 0 and <= 10000, at most 6 decimal places.")
        parser.add_argument("--reason", required=True, help="Why (required, at most 500 characters).")
        parser.add_argument(
            "--initiated-by", required=True, dest="initiated_by", help="Username of the staff user granting."
        )
        parser.add_argument(
            "--idempotency-key",
            dest="idempotency_key",
            help="Grant at most once per key for this wallet (shared with the API's Idempotency-Key).",
        )

    def handle(self, *args, user, amount, reason, initiated_by, idempotency_key=None, **options):
        initiator = staff_initiator(initiated_by)
        recipient = resolve_user(user)
        try:
            row = services.grant(
                user=recipient,
                amount=amount,
                reason=reason,
                initiated_by=initiator,
                idempotency_key=idempotency_key,
            )
        except BillingError as exc:
            where = f"{exc.field}: " if exc.field else ""
            raise CommandError(f"{where}{exc.message}") from exc
        if row.replayed:
            balance = wallet_summary(user=recipient).balance
            message = (
                f"Already granted with this idempotency key (transaction {row.pk}); nothing new written."
            )
        else:
            balance = row.balance_after
            message = (
                f"Granted {format_money(row.amount)} credits to {recipient.username} (transaction {row.pk})."
            )
        self.stdout.write(self.style.SUCCESS(f"{message} New balance: {format_money(balance)}"))
