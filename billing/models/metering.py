"""Prices and metering: credits per 1000 tokens per model, and every metered model call."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.models.fields import MoneyField


class ModelPrice(models.Model):
    """Credits per 1000 tokens for one model, in each direction."""

    model = models.CharField(max_length=100, unique=True)
    input_price_per_1k = MoneyField()
    output_price_per_1k = MoneyField()
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "billing_modelprice"
        ordering = ["model"]
        constraints = [
            models.CheckConstraint(
                condition=Q(input_price_per_1k__gte=0) & Q(output_price_per_1k__gte=0),
                name="modelprice_prices_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.model


class LLMCallEvent(models.Model):
    """One metered model call, with the unit prices it was charged at (history never re-priced)."""

    class Status(models.TextChoices):
        OK = "ok", "ok"
        ERROR = "error", "error"

    class Purpose(models.TextChoices):
        CHAT = "chat", "chat"  # the turn's first call, answering the user
        TOOL_FOLLOWUP = "tool_followup", "tool follow-up"  # a call answering tool results
        SUMMARY = "summary", "summary"  # a call summarizing a session's older history
        API = "api", "api"  # a call made through the OpenAI-compatible gateway with an API key

    # Indexed by llmcall_user_created_idx (user, created_at); no index of its own to keep up per call.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="llm_calls", db_index=False
    )
    model = models.CharField(max_length=100)
    provider = models.CharField(max_length=32)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = MoneyField(default=0)
    input_price_per_1k = MoneyField(default=0)
    output_price_per_1k = MoneyField(default=0)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OK)
    error = models.CharField(max_length=500, blank=True, default="")
    latency_ms = models.PositiveIntegerField(default=0)
    # Enforcement was off for this wallet, but would have refused this turn (shadow mode).
    shadow_refusal = models.BooleanField(default=False)
    # Database defaults too: rows written by raw SQL that predates these columns stay valid.
    purpose = models.CharField(
        max_length=16, choices=Purpose.choices, default=Purpose.CHAT, db_default=Purpose.CHAT
    )
    # The call failed and the caller used a deterministic stand-in for its answer (a summary's
    # fallback): counted by the usage summary as `summary_fallbacks`.
    used_fallback = models.BooleanField(default=False, db_default=False)
    # A gateway call: the API key's limit it counted against (accounts.ApiKey points at the same row),
    # and the request's `user` field (the client's own end-user id, free text) when it sent one.
    spend_limit = models.ForeignKey(
        "billing.SpendLimit",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="calls",
        db_index=False,
    )
    end_user = models.CharField(max_length=256, blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billing_llmcallevent"
        verbose_name = "LLM call event"
        indexes = [
            models.Index(fields=["created_at"], name="llmcall_created_idx"),
            models.Index(fields=["user", "created_at"], name="llmcall_user_created_idx"),
            models.Index(fields=["model", "created_at"], name="llmcall_model_created_idx"),
            # A key's calls (its admin page, its usage by day, week and month).
            models.Index(
                fields=["spend_limit", "created_at"],
                name="llmcall_spend_limit_idx",
                condition=Q(spend_limit__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(cost__gte=0), name="llmcall_cost_non_negative"),
            models.CheckConstraint(
                condition=Q(status="ok") | Q(cost=0), name="llmcall_failed_call_costs_nothing"
            ),
            models.CheckConstraint(
                condition=Q(purpose__in=["chat", "tool_followup", "summary", "api"]),
                name="llmcall_purpose_known",
            ),
            models.CheckConstraint(
                condition=Q(used_fallback=False) | Q(cost=0), name="llmcall_fallback_costs_nothing"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} call #{self.pk} ({self.status})"


class DetachedCallMonth(models.Model):
    """A month of call events exported and detached from the partitioned table (retention).

    Its ledger rows and holds keep their `llm_call_id` (no database constraint); check_ledger accepts a
    missing event whose id lies in a detached month's range, and the rollups keep its figures.
    """

    month = models.DateField(unique=True)  # the first day of the month (UTC)
    partition = models.CharField(max_length=63)  # the detached table's name (gone when dropped)
    rows = models.BigIntegerField()
    first_id = models.BigIntegerField(null=True)
    last_id = models.BigIntegerField(null=True)
    exported_to = models.CharField(max_length=500)
    dropped = models.BooleanField(default=False)
    detached_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billing_detachedcallmonth"
        ordering = ["-month"]

    def __str__(self) -> str:
        return f"call events of {self.month:%Y-%m} ({self.rows} rows)"
