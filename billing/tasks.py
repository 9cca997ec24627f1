"""Billing's background jobs (procrastinate finds them in each app's tasks.py): expired holds released, expired lots
written off, allowances issued, the ledger reconciled nightly, call event partitions made ahead.

Periodic: deferred by whichever worker is running, once per tick across all workers (procrastinate
dedupes them); docs/notifications.md lists every app's jobs.
"""

import logging

from procrastinate.contrib.django import app

from billing import partitions, services
from billing.reconcile import check_ledger
from billing.services.allowances import issue_allowances
from billing.services.lots import expire_lots

logger = logging.getLogger(__name__)


@app.periodic(cron="* * * * *", periodic_id="release_expired_holds")
@app.task(name="billing.release_expired_holds", queueing_lock="release_expired_holds")
def release_expired_holds(timestamp: int) -> int:
    """A crashed web worker's holds, past their expiry: released, or charged with their stream's progress."""
    return services.release_expired_holds()


@app.periodic(cron="* * * * *", periodic_id="expire_credit_lots")
@app.task(name="billing.expire_credit_lots", queueing_lock="expire_credit_lots")
def expire_credit_lots(timestamp: int) -> int:
    """Lots past their expiry: what is left of each leaves the wallet as one expiry row, once."""
    return expire_lots()


@app.periodic(cron="* * * * *", periodic_id="issue_allowances")
@app.task(name="billing.issue_allowances", queueing_lock="issue_allowances")
def issue_recurring_allowances(timestamp: int) -> int:
    """Each assigned user's allowance for the current period, once (late after downtime, never twice)."""
    return issue_allowances()


@app.periodic(cron="40 3 * * *", periodic_id="check_ledger")
@app.task(name="billing.check_ledger", queueing_lock="check_ledger")
def nightly_check_ledger(timestamp: int) -> bool:
    """Reconcile every wallet nightly (manage.py check_ledger); an error log names each one that disagrees."""
    result = check_ledger()
    for discrepancy in result.discrepancies or []:
        logger.error("ledger discrepancy", extra={"discrepancy": str(discrepancy)})
    return result.ok


@app.periodic(cron="17 2 * * *", periodic_id="ensure_call_event_partitions")
@app.task(name="billing.ensure_call_event_partitions", queueing_lock="ensure_call_event_partitions")
def ensure_call_event_partitions(timestamp: int) -> list[str]:
    """Call events' monthly partitions exist CALL_EVENT_PARTITIONS_AHEAD months ahead (daily: a missed day is harmless)."""
    created = partitions.ensure_call_event_partitions()
    stray = partitions.default_partition_rows()
    if stray:
        logger.warning("call events in the default partition", extra={"rows": stray})
    return created
