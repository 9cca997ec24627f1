"""Reporting's admin entry points: a proxy of billing's LLM call events that the daily-usage page hangs on."""

from billing.models import LLMCallEvent


class DailyUsage(LLMCallEvent):
    """No table of its own: gives the usage report an admin URL and a "view daily usage" permission."""

    class Meta:
        proxy = True
        verbose_name = "daily usage"
        verbose_name_plural = "daily usage"
        # A report is only ever read.
        default_permissions = ("view",)
