"""The support console for billing: wallets and grants, the read-only ledger and usage events, prices, holds.

Each page lives in its own module; importing them here registers them (Django's autodiscover
imports this package).
"""

from billing.admin import (  # noqa: F401 - registers the pages
    allowances,
    events,
    holds,
    ledger,
    prices,
    purchases,
    wallets,
)
from billing.admin.actions import GRANT_PERMISSION, ledger_action
from billing.admin.ledger import refund_debits
from billing.admin.wallets import ENFORCEMENT_PERMISSION, LEDGER_ROWS_ON_WALLET_PAGE, low_balance_marker

__all__ = [
    "ENFORCEMENT_PERMISSION",
    "GRANT_PERMISSION",
    "LEDGER_ROWS_ON_WALLET_PAGE",
    "ledger_action",
    "low_balance_marker",
    "refund_debits",
]
