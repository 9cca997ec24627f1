"""Spend limits: the amounts billing refuses to reserve past, per API key and per wallet cap, each with its calendar period."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.models.fields import MoneyField
from billing.models.ledger import Wallet


class SpendLimit(models.Model):
    """One limit on a wallet's spending, enforced inside the reservation statement (billing.services.holds).

    `kind` says what it counts: a `key` limit counts the calls made with one API key (its holds and
    call events point at it; accounts.ApiKey points down at it); a cap (`user_cap`, set by the user,
    or `staff_cap`, which the user cannot change) counts all of the wallet's calls. `amount` null: no
    limit (a key's row then only counts its usage). `period` is a calendar period in
    REPORT_TIME_ZONE, null for a limit that never resets.

    The period's spending is `spent` when `period_start` is the current period's first day, else 0:
    the calendar decides, no job resets anything. `spent` and `held` (a key's open holds; a cap reads
    the wallet's `held`) move with the wallet, under its row lock, in the statements that reserve and
    charge, so concurrent reservations each see what the previous one left.
    """

    class Kind(models.TextChoices):
        KEY = "key", "API key limit"
        USER_CAP = "user_cap", "spending cap (the user's)"
        STAFF_CAP = "staff_cap", "spending cap (staff)"

    class Period(models.TextChoices):
        DAY = "day", "day"
        WEEK = "week", "week"
        MONTH = "month", "month"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="spend_limits", db_index=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = MoneyField(null=True, blank=True)
    period = models.CharField(max_length=8, choices=Period.choices, null=True, blank=True)
    # The first local day of the period `spent` belongs to (null for a limit that never resets).
    period_start = models.DateField(null=True, blank=True)
    spent = MoneyField(default=0)
    held = MoneyField(default=0)
    # The highest cap alert (50, 80, 100 percent) sent for the period starting `alerted_period_start`.
    alerted_percent = models.PositiveSmallIntegerField(default=0)
    alerted_period_start = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "billing_spendlimit"
        verbose_name = "spend limit"
        indexes = [models.Index(fields=["wallet", "kind"], name="spendlimit_wallet_kind_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["key", "user_cap", "staff_cap"]), name="spendlimit_kind_known"
            ),
            models.CheckConstraint(
                condition=Q(period__isnull=True) | Q(period__in=["day", "week", "month"]),
                name="spendlimit_period_known",
            ),
            models.CheckConstraint(
                condition=Q(amount__isnull=True) | Q(amount__gte=0), name="spendlimit_amount_non_negative"
            ),
            models.CheckConstraint(condition=Q(held__gte=0), name="spendlimit_held_non_negative"),
            # A cap always has an amount and a period; a wallet has at most one cap of each kind.
            models.CheckConstraint(
                condition=Q(kind="key") | (Q(amount__isnull=False) & Q(period__isnull=False)),
                name="spendlimit_cap_complete",
            ),
            models.UniqueConstraint(
                fields=["wallet", "kind"], condition=~Q(kind="key"), name="spendlimit_one_cap_per_kind"
            ),
        ]

    def __str__(self) -> str:
        amount = "no limit" if self.amount is None else f"{self.amount}/{self.period or 'ever'}"
        return f"{self.get_kind_display()} #{self.pk} ({amount})"
