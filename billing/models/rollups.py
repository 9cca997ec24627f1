"""The usage rollups: what a recorded call adds up per day, user, model and shard, and active-day bitmaps."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from billing.models.fields import MoneyField


class UsageFigures(models.Model):
    """What a usage rollup row adds up: successful calls with their tokens and cost; the rest apart."""

    calls = models.BigIntegerField(default=0)
    failed_calls = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost = MoneyField(default=0)
    shadow_refusals = models.BigIntegerField(default=0)
    # Calls whose answer was replaced by a deterministic fallback (LLMCallEvent.used_fallback).
    summary_fallbacks = models.BigIntegerField(default=0, db_default=0)
    # The part of `cost` spent on tool follow-ups and on session summaries (the rest answered users).
    tool_followup_cost = MoneyField(default=0, db_default=0)
    summary_cost = MoneyField(default=0, db_default=0)

    class Meta:
        abstract = True


class UsageDaily(UsageFigures):
    """LLM usage per (local day, user, model), kept by every recorded call (billing.rollup).

    The usage summary reads it when filtered by user or model. Figures mirror the summary's: calls,
    tokens and cost count successful calls; failed calls and shadow refusals are apart.
    """

    day = models.DateField()
    # No index of its own: (user, day) below serves it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    model = models.CharField(max_length=100)

    class Meta:
        db_table = "billing_usagedaily"
        verbose_name = "daily usage rollup"
        # The unique (day, user, model) index is created by migration 0009 as a
        # covering index (INCLUDE the figures): the summary reads a date range by an index-only scan
        # in (day, user) order, and the charge's ON CONFLICT upsert uses it.
        indexes = [models.Index(fields=["user", "day"], name="usagedaily_user_day_idx")]

    def __str__(self) -> str:
        return f"{self.day} {self.user_id} {self.model}"


class UsageDayShard(UsageFigures):
    """LLM usage per local day and user shard (user_id % billing.rollup.SHARDS), over every user and model.

    Kept by every recorded call with UsageDaily, and read by the usage summary when it
    has no user or model filter: a 30-day range is a few hundred rows whatever the number of events.
    Sharded so that concurrent charges of different users rarely wait on one row lock. `users` counts
    the shard's users with a successful call that day, so a day's unique users is the sum over shards.
    """

    day = models.DateField()
    shard = models.SmallIntegerField()
    users = models.BigIntegerField(default=0)

    class Meta:
        db_table = "billing_usagedayshard"
        verbose_name = "daily usage rollup by user shard"
        constraints = [models.UniqueConstraint(fields=["day", "shard"], name="usagedayshard_day_shard_uniq")]

    def __str__(self) -> str:
        return f"{self.day} shard {self.shard}"


class UsageUserMonth(models.Model):
    """The local days of one month on which a user made at least one successful call, as a bitmap.

    Bit d-1 of `days` is day d of the month. Setting a bit that was clear is how the charge learns it
    is the user's first successful call of the day (and counts the user in UsageDayShard.users); the
    summary counts a range's unique users from these rows (~one per active user and month).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    month = models.DateField()  # the first day of the local month
    days = models.IntegerField()

    class Meta:
        db_table = "billing_usageusermonth"
        verbose_name = "monthly active days of a user"
        # The unique (month, user) index is created by migration 0010, covering
        # `days`: the charge's ON CONFLICT target and the summary's index-only scan of a month.

    def __str__(self) -> str:
        return f"{self.user_id} {self.month:%Y-%m} {self.days:031b}"


class UsageUserWeek(models.Model):
    """The local days of one week (Monday first) on which a user made a successful call, as a bitmap.

    Bit 0 is Monday. Kept with UsageUserMonth, set only on a user's first successful call of a day;
    the summary's week buckets count their users from it (one row per active user and week).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    week = models.DateField()  # the Monday the local week starts on
    days = models.SmallIntegerField()

    class Meta:
        db_table = "billing_usageuserweek"
        verbose_name = "weekly active days of a user"
        # Unique (week, user) covering `days`: migration 0010, as for UsageUserMonth.

    def __str__(self) -> str:
        return f"{self.user_id} {self.week} {self.days:07b}"


class UsageRollupState(models.Model):
    """One row: the REPORT_TIME_ZONE the rollups were last rebuilt in (a system check compares it to the setting)."""

    time_zone = models.CharField(max_length=64)
    built_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billing_usagerollupstate"

    def __str__(self) -> str:
        return f"usage rollup ({self.time_zone}, {self.built_at:%Y-%m-%d %H:%M})"
