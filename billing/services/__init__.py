"""Billing's services: every write that moves credits, each atomic, the wallet moved by one locking statement.

- ledger: wallets opened, grants, refunds and adjustments (idempotent), enforcement overrides;
- estimates: a call's hold sized (its worst case), refused when it could not be money;
- holds: a call's cost reserved before it is made, its stream's progress recorded on it, released if
  it never is made (charged with that progress if its worker died);
- charging: a call recorded and debited (its hold settled), or recorded as failed (its hold released);
- purchases: credits bought through Stripe Checkout, credited once by the signed webhook.
- lots: each credit's lot, burned in order by debits, written off at expiry; allowances: issued per period.
"""

from billing.services.charging import ChargeResult, ThenWrite, charge, compute_cost, record_failed_call
from billing.services.estimates import hold_amount
from billing.services.holds import (
    Reservation,
    record_progress,
    release,
    release_expired_holds,
    reserve,
)
from billing.services.ledger import (
    GRANT_BEYOND_LIMIT_PERMISSION,
    GRANT_MAX,
    REASON_MAX,
    STARTING_CREDITS_REASON,
    adjust,
    check_grant_limit,
    grant,
    open_wallet,
    refund,
    refundable,
    refundable_of,
    set_enforcement,
    validate_adjustment_amount,
    validate_grant_amount,
    validate_reason,
    validate_refund_amount,
)
from billing.services.limits import (
    change_key_limit,
    open_key_limit,
    set_spend_cap,
    validate_limit,
)
from billing.services.lots import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    expire_lots,
    validate_category,
    validate_expires_at,
    validate_priority,
)
from billing.services.purchases import buy_credits, handle_stripe_webhook, payments_enabled

__all__ = [
    "GRANT_BEYOND_LIMIT_PERMISSION",
    "GRANT_MAX",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "expire_lots",
    "validate_category",
    "validate_expires_at",
    "validate_priority",
    "REASON_MAX",
    "STARTING_CREDITS_REASON",
    "ChargeResult",
    "ThenWrite",
    "adjust",
    "check_grant_limit",
    "buy_credits",
    "handle_stripe_webhook",
    "payments_enabled",
    "change_key_limit",
    "open_key_limit",
    "set_spend_cap",
    "validate_limit",
    "Reservation",
    "charge",
    "compute_cost",
    "grant",
    "hold_amount",
    "open_wallet",
    "record_failed_call",
    "record_progress",
    "refund",
    "refundable",
    "refundable_of",
    "release",
    "release_expired_holds",
    "reserve",
    "set_enforcement",
    "validate_adjustment_amount",
    "validate_grant_amount",
    "validate_reason",
    "validate_refund_amount",
]
