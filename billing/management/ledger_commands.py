"""What grant_credits, refund_credits and adjust_credits share: who is named, and a ledger write's outcome."""

from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from billing.models import CreditTransaction
from core.errors import DomainError
from core.users import users_matching


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


def staff_initiator(username: str, *, what: str):
    """The active staff user named `username`, to record as the initiator, or a one-line CommandError."""
    initiator = get_user_model().objects.filter(username=username).first()
    if initiator is None:
        raise CommandError(f"No user named {username!r} to record as the initiator.")
    if not initiator.is_staff or not initiator.is_active:
        raise CommandError(f"{username!r} is not an active staff user; only staff can {what}.")
    return initiator


def add_ledger_options(parser, *, verb: str) -> None:
    """--reason, --initiated-by and --idempotency-key, as every ledger command takes them."""
    parser.add_argument("--reason", required=True, help="Why (required, at most 500 characters).")
    parser.add_argument(
        "--initiated-by", required=True, dest="initiated_by", help=f"Username of the staff user {verb}."
    )
    parser.add_argument(
        "--idempotency-key",
        dest="idempotency_key",
        help="At most once per key for this wallet (shared with the API's Idempotency-Key).",
    )


def write_row(write: Callable[[], CreditTransaction]) -> CreditTransaction:
    """Run one of billing's ledger services; a refusal becomes a one-line CommandError (nothing written)."""
    try:
        return write()
    except DomainError as exc:
        where = f"{exc.field}: " if exc.field else ""
        raise CommandError(f"{where}{exc.message}") from exc


def outcome(row: CreditTransaction, *, verb: str, done: str) -> str:
    """`done`, or what a replay under the same idempotency key says instead."""
    if row.replayed:
        return f"Already {verb} with this idempotency key (transaction {row.pk}); nothing new written."
    return done
