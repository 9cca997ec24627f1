"""The money: wallets, the append-only credit ledger, model prices, metered LLM calls, usage rollups.

One module per group; every model is re-exported here, so `from billing.models import X` and the
migrations see one app's models as before.
"""

from billing.models.events import WalletEvent
from billing.models.fields import MoneyField
from billing.models.ledger import (
    CreditHold,
    CreditTransaction,
    CreditTransactionQuerySet,
    LedgerAppendOnly,
    Wallet,
)
from billing.models.limits import SpendLimit
from billing.models.lots import Allowance, AllowanceIssue, CreditLot, LotAllocation
from billing.models.metering import DetachedCallMonth, LLMCallEvent, ModelPrice
from billing.models.purchases import Purchase
from billing.models.rollups import (
    USAGE_FIGURES,
    UsageDaily,
    UsageDayShard,
    UsageFigure,
    UsageFigures,
    UsageKeyDaily,
    UsageRollupState,
    UsageUserMonth,
    UsageUserWeek,
)

__all__ = [
    "DetachedCallMonth",
    "USAGE_FIGURES",
    "Allowance",
    "AllowanceIssue",
    "CreditLot",
    "LotAllocation",
    "CreditHold",
    "CreditTransaction",
    "CreditTransactionQuerySet",
    "LLMCallEvent",
    "LedgerAppendOnly",
    "ModelPrice",
    "Purchase",
    "SpendLimit",
    "MoneyField",
    "UsageDaily",
    "UsageDayShard",
    "UsageFigure",
    "UsageFigures",
    "UsageKeyDaily",
    "UsageRollupState",
    "UsageUserMonth",
    "UsageUserWeek",
    "Wallet",
    "WalletEvent",
]
