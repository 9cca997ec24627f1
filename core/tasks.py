"""core's background job (procrastinate finds it in this app's tasks.py): spent rate-limit keys removed."""

from procrastinate.contrib.django import app

from core import ratelimits


@app.periodic(cron="23 * * * *", periodic_id="prune_rate_limits")
@app.task(name="core.prune_rate_limits", queueing_lock="prune_rate_limits")
def prune_rate_limits(timestamp: int) -> int:
    """Hourly: keys whose arrival time has passed say nothing any more (a full burst is allowed either way)."""
    return ratelimits.prune()
