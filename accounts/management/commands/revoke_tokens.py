"""Revoke every API token and browser session of one user (log them out everywhere), from the command line."""

from django.core.management.base import BaseCommand, CommandError

from accounts.services import revoke_all_tokens
from core.users import users_matching


class Command(BaseCommand):
    help = "Revoke every API token of a user and end their browser sessions (an id, an email or a username)."

    def add_arguments(self, parser):
        parser.add_argument("user", help="User id (all digits), email (contains @) or username.")

    def handle(self, *args, user, **options):
        found = users_matching(user)
        if not found:
            raise CommandError(f"No user matches {user!r}.")
        if len(found) > 1:
            raise CommandError(f"{user!r} matches more than one user; use the user id.")
        count = revoke_all_tokens(user=found[0], revoked_by=None)  # an operator, not the user: logged as none
        self.stdout.write(self.style.SUCCESS(f"Revoked {count} token(s) of {found[0].username}."))
