"""core's one table: the throttles' counters, shared by every process and instance (core.throttling)."""

from django.db import models


class RateLimit(models.Model):
    """One throttled key (a scope and what it counts: an address, a user, a username digest).

    `tat` is the key's theoretical arrival time (GCRA): the request that moves it more than one
    period ahead of now is refused. A row whose `tat` has passed says nothing any more (prune_rate_limits).
    """

    key = models.CharField(max_length=200, primary_key=True)
    tat = models.DateTimeField()

    class Meta:
        verbose_name = "rate limit"

    def __str__(self) -> str:
        return self.key
