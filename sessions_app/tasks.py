"""sessions_app's background jobs (procrastinate finds them in each app's tasks.py): old turn Idempotency-Keys pruned hourly."""

import logging

from procrastinate.contrib.django import app

from sessions_app import idempotency

logger = logging.getLogger(__name__)


@app.periodic(cron="17 * * * *", periodic_id="prune_idempotency_keys")
@app.task(name="sessions_app.prune_idempotency_keys", queueing_lock="prune_idempotency_keys")
def prune_idempotency_keys(timestamp: int) -> int:
    """What `manage.py prune_idempotency_keys` does, hourly: keys older than 24 hours go (abandoned ones too)."""
    deleted = idempotency.prune()
    logger.info("idempotency keys pruned", extra={"deleted": deleted})
    return deleted
