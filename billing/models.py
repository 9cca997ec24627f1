"""The money: wallets, the append-only credit ledger, model prices, and metered LLM calls."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.money import MAX_DIGITS, PLACES


def MoneyField(**kwargs):  # noqa: N802 - reads like a field class at the call site
    return models.DecimalField(max_digits=MAX_DIGITS, decimal_places=PLACES, **kwargs)


class Wallet(models.Model):
    """One per user. `balance` is a cached sum of the wallet's ledger rows, `held` of its open holds."""

    class Enforcement(models.TextChoices):
        DEFAULT = "default", "default (follow CREDIT_ENFORCEMENT_ENABLED)"
        EXEMPT = "exempt", "exempt (never refused)"
        ENFORCED = "enforced", "enforced (refused when empty, whatever the setting)"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="wallet")
    balance = MoneyField(default=0)
    held = MoneyField(default=0)
    enforcement = models.CharField(max_length=8, choices=Enforcement.choices, default=Enforcement.DEFAULT)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "billing_wallet"
        permissions = [("set_enforcement", "Can set a wallet's enforcement override")]
        constraints = [
            models.CheckConstraint(condition=Q(held__gte=0), name="wallet_held_non_negative"),
            models.CheckConstraint(
                condition=Q(enforcement__in=["default", "exempt", "enforced"]),
                name="wallet_enforcement_known",
            ),
        ]

    def __str__(self) -> str:
        return f"Wallet of {self.user}"

    @property
    def available(self):
        return self.balance - self.held


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
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billing_llmcallevent"
        verbose_name = "LLM call event"
        indexes = [
            models.Index(fields=["created_at"], name="llmcall_created_idx"),
            models.Index(fields=["user", "created_at"], name="llmcall_user_created_idx"),
            models.Index(fields=["model", "created_at"], name="llmcall_model_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(cost__gte=0), name="llmcall_cost_non_negative"),
            models.CheckConstraint(
                condition=Q(status="ok") | Q(cost=0), name="llmcall_failed_call_costs_nothing"
            ),
            models.CheckConstraint(
                condition=Q(purpose__in=["chat", "tool_followup", "summary"]), name="llmcall_purpose_known"
            ),
            models.CheckConstraint(
                condition=Q(used_fallback=False) | Q(cost=0), name="llmcall_fallback_costs_nothing"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} call #{self.pk} ({self.status})"


class LedgerAppendOnly(Exception):
    """Raised on any attempt to change or remove a ledger row from Python."""


class CreditTransactionQuerySet(models.QuerySet):
    def delete(self):
        raise LedgerAppendOnly("The credit ledger is append-only: rows cannot be deleted.")


class CreditTransaction(models.Model):
    """An append-only ledger row: signed amount, the balance right after it, and who initiated it."""

    class Kind(models.TextChoices):
        GRANT = "grant", "grant"
        DEBIT = "debit", "debit"
        REFUND = "refund", "refund"
        ADJUSTMENT = "adjustment", "adjustment"

    # Indexed by credittx_wallet_id_idx (wallet, -id). The optional references below are indexed
    # where set only (partial indexes): a debit, the common row, adds no empty entries to them.
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="transactions", db_index=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = MoneyField()
    balance_after = MoneyField()
    reason = models.CharField(max_length=500, blank=True, default="")
    initiated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="initiated_transactions",
        db_index=False,
    )
    llm_call = models.ForeignKey(
        LLMCallEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="transactions"
    )
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    # The debit a refund gives back (all or part of); set on refunds only (credittx_refund_of_iff_refund).
    refund_of = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="refunds", db_index=False
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = CreditTransactionQuerySet.as_manager()

    class Meta:
        db_table = "billing_credittransaction"
        indexes = [
            # The user's ledger and the wallet's history: newest first by id within a wallet.
            models.Index(fields=["wallet", "-id"], name="credittx_wallet_id_idx"),
            models.Index(fields=["created_at"], name="credittx_created_idx"),
            models.Index(
                fields=["initiated_by"],
                name="credittx_initiated_by_idx",
                condition=Q(initiated_by__isnull=False),
            ),
            models.Index(
                fields=["refund_of"], name="credittx_refund_of_idx", condition=Q(refund_of__isnull=False)
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="grant") | Q(amount__gt=0), name="credittx_grant_positive"
            ),
            models.CheckConstraint(
                condition=~Q(kind="debit") | Q(amount__lt=0), name="credittx_debit_negative"
            ),
            models.CheckConstraint(
                condition=~Q(kind="refund") | Q(amount__gt=0), name="credittx_refund_positive"
            ),
            models.CheckConstraint(
                condition=~Q(kind="adjustment") | ~Q(amount=0), name="credittx_adjustment_nonzero"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["grant", "debit", "refund", "adjustment"]),
                name="credittx_kind_known",
            ),
            models.CheckConstraint(
                condition=(Q(kind="refund") & Q(refund_of__isnull=False))
                | (~Q(kind="refund") & Q(refund_of__isnull=True)),
                name="credittx_refund_of_iff_refund",
            ),
            models.UniqueConstraint(
                fields=["wallet", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="credittx_wallet_idempotency_key_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} (#{self.pk})"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise LedgerAppendOnly(
                "The credit ledger is append-only: record a correction as a new adjustment or refund."
            )
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerAppendOnly("The credit ledger is append-only: rows cannot be deleted.")


class CreditHold(models.Model):
    """A turn's estimated cost, reserved on the wallet before the model call (two-phase transfer)."""

    class Status(models.TextChoices):
        HELD = "held", "held"
        SETTLED = "settled", "settled"
        RELEASED = "released", "released"
        EXPIRED = "expired", "expired"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="holds")
    amount = MoneyField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.HELD)
    shadow_refusal = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    llm_call = models.ForeignKey(
        LLMCallEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="holds"
    )
    # Stream progress: what the open call has used so far, and what charging it needs without the
    # process that made it (billing.services.record_progress). A hold whose worker died is charged
    # with this at expiry (release_expired_holds), capped at `amount`; without progress it is just
    # released. All null until the first progress is recorded (`progress_at`).
    progress_price = models.ForeignKey(
        ModelPrice, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    progress_provider = models.CharField(max_length=32, null=True, blank=True)
    progress_purpose = models.CharField(
        max_length=16, choices=LLMCallEvent.Purpose.choices, null=True, blank=True
    )
    progress_input_tokens = models.PositiveIntegerField(null=True, blank=True)
    progress_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    progress_at = models.DateTimeField(null=True, blank=True)  # the last progress; null: none recorded

    class Meta:
        db_table = "billing_credithold"
        indexes = [
            # Open holds per wallet (the reserve path) and expired ones across wallets (the cron path).
            models.Index(
                fields=["wallet", "expires_at"], name="credithold_open_idx", condition=Q(status="held")
            ),
            models.Index(
                fields=["expires_at"], name="credithold_open_expiry_idx", condition=Q(status="held")
            ),
            models.Index(
                fields=["progress_price"],
                name="credithold_progress_price_idx",
                condition=Q(progress_price__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="credithold_amount_non_negative"),
            models.CheckConstraint(
                condition=Q(status__in=["held", "settled", "released", "expired"]),
                name="credithold_status_known",
            ),
            # Progress is recorded whole: a hold charged at expiry has everything its charge needs.
            models.CheckConstraint(
                condition=Q(progress_at__isnull=True)
                | Q(
                    progress_price__isnull=False,
                    progress_provider__isnull=False,
                    progress_purpose__isnull=False,
                    progress_input_tokens__isnull=False,
                    progress_output_tokens__isnull=False,
                ),
                name="credithold_progress_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"hold #{self.pk} {self.amount} ({self.status})"


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


class WalletEvent(models.Model):
    """A wallet crossing a line (low balance, empty, back above), recorded once in the transaction that moved it.

    Written only by billing.services.crossings under the wallet's row lock, so each crossing is one
    row; delivery (webhook, email) is background work keyed by `uuid`, which receivers dedupe on.
    """

    class Type(models.TextChoices):
        LOW_BALANCE = "wallet.low_balance", "wallet.low_balance"
        DEPLETED = "wallet.depleted", "wallet.depleted"
        REPLENISHED = "wallet.replenished", "wallet.replenished"

    uuid = models.UUIDField(unique=True, editable=False)
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="events")
    type = models.CharField(max_length=32, choices=Type.choices)
    balance_before = MoneyField()
    balance = MoneyField()  # the balance right after the move that crossed
    threshold = MoneyField()  # LOW_BALANCE_THRESHOLD when it crossed
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billing_walletevent"
        verbose_name = "wallet event"
        indexes = [
            # The wallet's last crossing (the next crossing's check, the wallet admin page).
            models.Index(fields=["wallet", "-id"], name="walletevent_wallet_id_idx"),
            models.Index(fields=["created_at"], name="walletevent_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(type__in=["wallet.low_balance", "wallet.depleted", "wallet.replenished"]),
                name="walletevent_type_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"
