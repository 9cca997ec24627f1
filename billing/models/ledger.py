"""The money itself: wallets, the append-only credit ledger, and the holds reserved on wallets."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.models.fields import MoneyField
from billing.models.metering import LLMCallEvent, ModelPrice


class Wallet(models.Model):
    """One per user. `balance` is a cached sum of the wallet's ledger rows, `held` of its open holds."""

    class Enforcement(models.TextChoices):
        DEFAULT = "default", "default (follow CREDIT_ENFORCEMENT_ENABLED)"
        EXEMPT = "exempt", "exempt (never refused)"
        ENFORCED = "enforced", "enforced (refused when empty, whatever the setting)"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="wallet")
    balance = MoneyField(default=0)
    held = MoneyField(default=0)
    # What charges took beyond the wallet's live lots; the next credit pays it first (billing.services.lots).
    # A database default too: rows inserted by raw SQL (the bench seed) start without debt.
    debt = MoneyField(default=0, db_default=0)
    enforcement = models.CharField(max_length=8, choices=Enforcement.choices, default=Enforcement.DEFAULT)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "billing_wallet"
        permissions = [("set_enforcement", "Can set a wallet's enforcement override")]
        constraints = [
            models.CheckConstraint(condition=Q(held__gte=0), name="wallet_held_non_negative"),
            models.CheckConstraint(condition=Q(debt__gte=0), name="wallet_debt_non_negative"),
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
        PURCHASE = "purchase", "purchase"  # credits bought (a paid Stripe Checkout Session)
        ALLOWANCE = "allowance", "allowance"  # a recurring allowance's credits for one period
        EXPIRY = "expiry", "expiry"  # what was left of a lot when it expired, leaving the wallet

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
    # No database constraint: call events are partitioned by month (a foreign key to them would have
    # to carry created_at); the charge writes both in one statement and check_ledger checks the link.
    llm_call = models.ForeignKey(
        LLMCallEvent,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="transactions",
        db_constraint=False,
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
                condition=~Q(kind__in=["purchase", "allowance"]) | Q(amount__gt=0),
                name="credittx_credit_positive",
            ),
            models.CheckConstraint(
                condition=~Q(kind="expiry") | Q(amount__lt=0), name="credittx_expiry_negative"
            ),
            models.CheckConstraint(
                condition=Q(
                    kind__in=["grant", "debit", "refund", "adjustment", "purchase", "allowance", "expiry"]
                ),
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
    # No database constraint, as CreditTransaction.llm_call (call events are partitioned by month).
    llm_call = models.ForeignKey(
        LLMCallEvent,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="holds",
        db_constraint=False,
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
    # The unit prices the call was reserved at, as they were: staff edit a price row in place, and a
    # call is charged at its reservation's price, not at one set while it ran. Null for progress
    # recorded before billing 0029 (such a hold is charged at its price row's current prices).
    progress_input_price_per_1k = MoneyField(null=True, blank=True)
    progress_output_price_per_1k = MoneyField(null=True, blank=True)
    # The API key limit this hold counts against (a gateway call); its `held` includes `amount` while
    # the hold is open. Caps count every hold of the wallet through the wallet's `held`.
    spend_limit = models.ForeignKey(
        "billing.SpendLimit",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="holds",
        db_index=False,
    )

    class Meta:
        db_table = "billing_credithold"
        indexes = [
            # Open holds per wallet: a reservation expires its wallet's stale ones through it, and
            # check_ledger and the sweep read every open hold with it.
            models.Index(
                fields=["wallet", "expires_at"], name="credithold_open_idx", condition=Q(status="held")
            ),
            # Open holds that only the sweep may close (a stream's with progress to charge, an API
            # key's), by expiry, across wallets. Not every open hold: a reservation's plan, kept by
            # its connection, could then read every expired hold of every wallet waiting for the
            # sweep to find its own (0.3 ms a turn at 2,000 of them, more cold).
            models.Index(
                fields=["expires_at"],
                name="credithold_swept_expiry_idx",
                condition=Q(status="held") & (Q(progress_at__isnull=False) | Q(spend_limit__isnull=False)),
            ),
            models.Index(
                fields=["spend_limit"],
                name="credithold_spend_limit_idx",
                condition=Q(spend_limit__isnull=False),
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
