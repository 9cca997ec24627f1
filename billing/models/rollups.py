"""The usage rollups: what a recorded call adds up per day, user, model, API key and shard, and active-day bitmaps."""

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from billing.models.fields import MoneyField
from billing.models.limits import SpendLimit
from billing.models.metering import LLMCallEvent


@dataclass(frozen=True)
class UsageFigure:
    """One figure every usage rollup row adds up, declared once for the model, the upkeep, the rebuild and the readers."""

    name: str  # the rollup column, and the key the usage selectors return it under
    money: bool  # credits (a MoneyField, read as Decimal), else a count (a bigint)
    recount: str  # its value over a group of LLMCallEvent rows, in SQL: the rebuild's aggregate
    of_call: Callable[[LLMCallEvent], int | Decimal]  # what one recorded call adds to it
    param: str  # the charge statement's parameter that carries of_call's value
    # A column added after rollup rows existed: the database fills those rows (and raw inserts) with 0.
    db_default: bool = False

    def model_field(self) -> models.Field:
        defaults = {"default": 0, **({"db_default": 0} if self.db_default else {})}
        return MoneyField(**defaults) if self.money else models.BigIntegerField(**defaults)


def _ok(event: LLMCallEvent) -> bool:
    return event.status == LLMCallEvent.Status.OK


def _cost_for(purpose: str) -> Callable[[LLMCallEvent], Decimal | int]:
    return lambda event: event.cost if _ok(event) and event.purpose == purpose else 0


# Calls, tokens and cost count successful calls; failed calls, shadow refusals and fallbacks are apart.
# A new figure is one entry here (and its migration): the rollup models, the charge's upsert, the
# rebuild and the usage selectors are all built from this tuple, in this order.
USAGE_FIGURES = (
    UsageFigure(
        "calls",
        money=False,
        recount="count(*) FILTER (WHERE status = 'ok')",
        of_call=lambda event: 1 if _ok(event) else 0,
        param="calls",
    ),
    UsageFigure(
        "failed_calls",
        money=False,
        recount="count(*) FILTER (WHERE status = 'error')",
        of_call=lambda event: 0 if _ok(event) else 1,
        param="failed_calls",
    ),
    UsageFigure(
        "input_tokens",
        money=False,
        recount="coalesce(sum(input_tokens) FILTER (WHERE status = 'ok'), 0)",
        of_call=lambda event: event.input_tokens if _ok(event) else 0,
        param="input_tokens",
    ),
    UsageFigure(
        "output_tokens",
        money=False,
        recount="coalesce(sum(output_tokens) FILTER (WHERE status = 'ok'), 0)",
        of_call=lambda event: event.output_tokens if _ok(event) else 0,
        param="output_tokens",
    ),
    UsageFigure(
        "cost",
        money=True,
        recount="coalesce(sum(cost) FILTER (WHERE status = 'ok'), 0)",
        of_call=lambda event: event.cost if _ok(event) else 0,
        param="cost",
    ),
    UsageFigure(
        "shadow_refusals",
        money=False,
        recount="count(*) FILTER (WHERE shadow_refusal)",
        of_call=lambda event: 1 if event.shadow_refusal else 0,
        param="shadow_count",
    ),
    # Calls whose answer was replaced by a deterministic fallback (LLMCallEvent.used_fallback).
    UsageFigure(
        "summary_fallbacks",
        money=False,
        recount="count(*) FILTER (WHERE used_fallback)",
        of_call=lambda event: 1 if event.used_fallback else 0,
        param="fallback_count",
        db_default=True,
    ),
    # The part of `cost` spent on tool follow-ups and on session summaries (the rest answered users).
    UsageFigure(
        "tool_followup_cost",
        money=True,
        recount="coalesce(sum(cost) FILTER (WHERE status = 'ok' AND purpose = 'tool_followup'), 0)",
        of_call=_cost_for(LLMCallEvent.Purpose.TOOL_FOLLOWUP),
        param="followup_cost",
        db_default=True,
    ),
    UsageFigure(
        "summary_cost",
        money=True,
        recount="coalesce(sum(cost) FILTER (WHERE status = 'ok' AND purpose = 'summary'), 0)",
        of_call=_cost_for(LLMCallEvent.Purpose.SUMMARY),
        param="summary_cost",
        db_default=True,
    ),
    # The part of `cost` spent through the OpenAI-compatible gateway (calls with an API key).
    UsageFigure(
        "api_cost",
        money=True,
        recount="coalesce(sum(cost) FILTER (WHERE status = 'ok' AND purpose = 'api'), 0)",
        of_call=_cost_for(LLMCallEvent.Purpose.API),
        param="api_cost",
        db_default=True,
    ),
)


class _UsageFiguresMeta:
    abstract = True


# What a usage rollup row adds up: one column per USAGE_FIGURES entry, in its order.
UsageFigures = type(
    "UsageFigures",
    (models.Model,),
    {
        "__module__": __name__,
        "__doc__": "What a usage rollup row adds up: one column per figure of USAGE_FIGURES.",
        "Meta": _UsageFiguresMeta,
        **{figure.name: figure.model_field() for figure in USAGE_FIGURES},
    },
)


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


class UsageKeyDaily(UsageFigures):
    """LLM usage per (local day, API key, model), kept by every recorded call made with a key (billing.rollup).

    A key is counted by its billing limit (SpendLimit of kind `key`; accounts.ApiKey points at it):
    the per-key usage readers read these rows, so a key's figures stay whole when months of call
    events are detached or dropped, like every other report's.
    """

    day = models.DateField()
    # No index of its own: the unique (spend_limit, day, model) index below leads with it.
    spend_limit = models.ForeignKey(SpendLimit, on_delete=models.PROTECT, related_name="+", db_index=False)
    model = models.CharField(max_length=100)

    class Meta:
        db_table = "billing_usagekeydaily"
        verbose_name = "daily usage rollup by API key"
        constraints = [
            # The charge's ON CONFLICT target, and the readers' range scan of one key's days.
            models.UniqueConstraint(
                fields=["spend_limit", "day", "model"], name="usagekeydaily_limit_day_model_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} limit {self.spend_limit_id} {self.model}"


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
