"""The background jobs (procrastinate, found by its Django integration): event deliveries and the periodic chores.

Run a worker with `manage.py procrastinate worker` (docs/notifications.md). Periodic jobs are deferred
by whichever worker is running, once per tick across all workers (procrastinate dedupes them).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.core.management import call_command, get_commands
from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.contrib.django import app

from billing import services as billing_services
from billing.reconcile import check_ledger
from notifications import services

logger = logging.getLogger(__name__)

RETRY_WAIT_MAX_SECONDS = 3600


class Backoff(BaseRetryStrategy):
    """Exponential backoff read from the settings at each failure: WEBHOOK_RETRY_BASE_SECONDS ** n, capped."""

    def get_retry_decision(self, *, exception, job) -> RetryDecision | None:
        if job.attempts + 1 >= settings.WEBHOOK_MAX_ATTEMPTS:
            return None  # the last try already marked its deliveries dead
        wait = min(settings.WEBHOOK_RETRY_BASE_SECONDS ** (job.attempts + 1), RETRY_WAIT_MAX_SECONDS)
        return RetryDecision(retry_in={"seconds": wait})


@app.task(name=services.DELIVER_TASK, pass_context=True, retry=Backoff())
def deliver_wallet_event(context, event_id: int) -> None:
    """One wallet event to the webhook and the user's inbox; retried with backoff, dead after N tries."""
    attempt = context.job.attempts + 1  # a job recovered from a killed worker counts the lost try
    services.deliver_event(event_id=event_id, attempt=attempt, final=attempt >= settings.WEBHOOK_MAX_ATTEMPTS)


# --- Periodic: what production would otherwise put on cron -------------------------------------
# Every 10 seconds (croniter's sixth field is seconds): a killed worker's jobs wait at most this
# long after WORKER_STALLED_SECONDS before another worker runs them again.
@app.periodic(cron="* * * * * */10", periodic_id="retry_stalled_jobs")
@app.task(name="notifications.retry_stalled_jobs", queueing_lock="retry_stalled_jobs", pass_context=True)
async def retry_stalled_jobs(context, timestamp: int) -> int:
    """Jobs left 'doing' by a worker that stopped sending heartbeats (killed, lost) run again."""
    stalled = await context.app.job_manager.get_stalled_jobs(
        seconds_since_heartbeat=settings.WORKER_STALLED_SECONDS
    )
    for job in stalled:
        await context.app.job_manager.retry_job(job)
        logger.warning(
            "stalled job retried",
            extra={"job_id": job.id, "task": job.task_name, "worker_id": job.worker_id},
        )
    return len(stalled)


@app.periodic(cron="* * * * *", periodic_id="release_expired_holds")
@app.task(name="notifications.release_expired_holds", queueing_lock="release_expired_holds")
def release_expired_holds(timestamp: int) -> int:
    """A crashed web worker's holds, past their expiry: released, or charged with their stream's progress."""
    return billing_services.release_expired_holds()


PRUNE_IDEMPOTENCY_KEYS_COMMAND = "prune_idempotency_keys"


@app.periodic(cron="17 * * * *", periodic_id="prune_idempotency_keys")
@app.task(name="notifications.prune_idempotency_keys", queueing_lock="prune_idempotency_keys")
def prune_idempotency_keys(timestamp: int) -> bool:
    """Run `manage.py prune_idempotency_keys` hourly, once that command exists (a no-op until then)."""
    if PRUNE_IDEMPOTENCY_KEYS_COMMAND not in get_commands():
        return False
    call_command(PRUNE_IDEMPOTENCY_KEYS_COMMAND)
    return True


@app.periodic(cron="40 3 * * *", periodic_id="check_ledger")
@app.task(name="notifications.check_ledger", queueing_lock="check_ledger")
def nightly_check_ledger(timestamp: int) -> bool:
    """Reconcile every wallet nightly (manage.py check_ledger); an error log names each one that disagrees."""
    result = check_ledger()
    for discrepancy in result.discrepancies or []:
        logger.error("ledger discrepancy", extra={"discrepancy": str(discrepancy)})
    return result.ok


@app.periodic(cron="10 4 * * *", periodic_id="clear_sessions")
@app.task(name="notifications.clear_sessions", queueing_lock="clear_sessions")
def clear_sessions(timestamp: int) -> None:
    """Expired admin and browser sessions removed (manage.py clearsessions)."""
    call_command("clearsessions")


FINISHED_JOBS_KEPT = timedelta(days=7)


@app.periodic(cron="20 4 * * *", periodic_id="delete_old_jobs")
@app.task(name="notifications.delete_old_jobs", queueing_lock="delete_old_jobs", pass_context=True)
async def delete_old_jobs(context, timestamp: int) -> None:
    """The queue's finished jobs older than a week go (deliveries keep their own record in Delivery)."""
    await context.app.job_manager.delete_old_jobs(
        nb_hours=int(FINISHED_JOBS_KEPT.total_seconds() // 3600), include_failed=True
    )
