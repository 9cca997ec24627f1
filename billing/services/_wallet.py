"""The one way a wallet moves: balance and holds changed by one locking UPDATE ... RETURNING."""

from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from billing.models import Wallet
from billing.services.crossings import record_crossings
from core.money import to_decimal

WALLET = Wallet._meta.db_table
# The UPDATE locks the row for the rest of the caller's transaction: concurrent writers queue on it,
# and each reads the balance the previous one left. RETURNING gives balance_after from this statement.
_MOVE_SQL = f"""
    UPDATE {WALLET}
    SET balance = balance + %(amount)s, held = held + %(held)s, updated_at = %(now)s
    WHERE user_id = %(user_id)s
    RETURNING id, balance
"""  # noqa: S608 - our table


@dataclass(frozen=True)
class Moved:
    wallet_id: int
    balance_before: Decimal
    balance_after: Decimal


def move(*, user_id: int, amount: Decimal, held: Decimal = Decimal(0)) -> Moved:
    """Add `amount` to the balance and `held` to the holds, recording any crossing; the caller holds the transaction."""
    with connection.cursor() as cursor:
        cursor.execute(_MOVE_SQL, {"amount": amount, "held": held, "now": timezone.now(), "user_id": user_id})
        row = cursor.fetchone()
    if row is None:
        raise Wallet.DoesNotExist(f"User {user_id} has no wallet.")
    balance_after = to_decimal(row[1])
    moved = Moved(wallet_id=row[0], balance_before=balance_after - amount, balance_after=balance_after)
    record_crossings(
        wallet_id=moved.wallet_id,
        user_id=user_id,
        balance_before=moved.balance_before,
        balance_after=moved.balance_after,
    )
    return moved
