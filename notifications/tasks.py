"""notifications' background jobs (procrastinate finds them in each app's tasks.py): event deliveries, and the site-wide chores.

Run a worker with `manage.py procrastinate worker` (docs/notifications.md). Periodic jobs are deferred
by whichever worker is running, once per tick across all workers (procrastinate dedupes them). Each
app runs its own chores (billing.tasks, sessions_app.tasks); the ones that belong to no app (the
queue's own housekeeping, Django's sessions) live here, with the worker they keep healthy: the top
floor may import anything it needs, and core is no installed app for procrastinate to search.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.core.management import call_command
from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.contrib.django import app

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


@app.task(
    name=services.DELIVER_TASK,
    pass_context=True,
    retry=Backoff(),
    queue=services.DELIVERY_QUEUE,
    priority=services.DELIVERY_PRIORITY,
)
def deliver_wallet_event(context, event_id: int) -> None:
    """One wallet event to the webhook and the user's inbox; retried with backoff, dead after N tries."""
    attempt = context.job.attempts + 1  # a job recovered from a killed worker counts the lost try
    services.deliver_event(event_id=event_id, attempt=attempt, final=attempt >= settings.WEBHOOK_MAX_ATTEMPTS)


# --- Periodic: what production would otherwise put on cron (the apps' own chores: their tasks.py) ---
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
