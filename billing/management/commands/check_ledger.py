"""manage.py check_ledger: reconcile every wallet (or one user's) against its ledger rows."""

from django.core.management.base import BaseCommand, CommandError

from billing.models import Wallet
from billing.reconcile import check_ledger
from core.progress import Progress


class Command(BaseCommand):
    help = (
        "Verify, in one snapshot, that each wallet's balance is the sum of its ledger rows and balance_after "
        "chains, and that holds, lots, refunds, purchases, allowances, call events, initiators and key "
        'limits agree with the ledger (docs/reliability.md, "What check_ledger proves").'
    )

    def add_arguments(self, parser):
        parser.add_argument("--user", help="Check only this user (id, email or username).")

    def handle(self, *args, user=None, **options):
        from billing.management.ledger_commands import resolve_user

        if user is not None and not user.strip():
            raise CommandError(
                "--user names nobody: give an id, an email or a username, or leave it out for all."
            )
        user_id = resolve_user(user).pk if user else None
        with Progress(self.stderr, "wallets checked") as progress:
            if progress.shown:
                progress.total = 1 if user_id else Wallet.objects.count()
            result = check_ledger(user_id=user_id, on_wallet=progress.advance)
        for d in result.discrepancies:
            self.stderr.write(f"wallet {d.wallet_id} ({d.username}): {d.problem}")
        summary = f"{result.wallets} wallets, {result.rows} ledger rows checked"
        if not result.ok:
            raise CommandError(f"{summary}: {len(result.discrepancies)} discrepancies found.")
        self.stdout.write(self.style.SUCCESS(f"{summary}: ledger is consistent."))
