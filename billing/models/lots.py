"""Credit lots: each credit that entered a wallet, what is left of it, when it expires, and which debits it paid."""

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from billing.exceptions import AllowancePeriodLocked
from billing.models.fields import MoneyField
from billing.models.ledger import CreditTransaction, Wallet


class CreditLot(models.Model):
    """A credit that entered a wallet: immutable but for `remaining`, which only billing's services move.

    A lot is open while `remaining > 0`; it is live (burnable) while also not past `expires_at`. The
    invariant, checked by check_ledger: sum(open lots' remaining) - wallet.debt == wallet.balance.
    `debt_paid` is what of `amount` went to the wallet's debt when the lot arrived, so
    remaining == amount - debt_paid - sum(its allocations).
    """

    class Category(models.TextChoices):
        PAID = "paid", "paid"
        PROMOTIONAL = "promotional", "promotional"

    class Source(models.TextChoices):
        GRANT = "grant", "grant"
        PURCHASE = "purchase", "purchase"
        ALLOWANCE = "allowance", "allowance"
        ADJUSTMENT = "adjustment", "adjustment"
        REFUND = "refund", "refund"
        OPENING = "opening", "opening balance"  # the balance each wallet held when lots began

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="lots", db_index=False)
    # The ledger row that brought the credit in (an opening lot: the wallet's last row then).
    transaction = models.OneToOneField(CreditTransaction, on_delete=models.PROTECT, related_name="lot")
    source = models.CharField(max_length=16, choices=Source.choices)
    category = models.CharField(max_length=16, choices=Category.choices)
    priority = models.PositiveSmallIntegerField(default=50)
    effective_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    amount = MoneyField()
    remaining = MoneyField()
    debt_paid = MoneyField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billing_creditlot"
        verbose_name = "credit lot"
        indexes = [
            # The burn (and the wallet views) read a wallet's open lots only; spent ones drop out.
            models.Index(fields=["wallet"], name="creditlot_open_idx", condition=Q(remaining__gt=0)),
            # The expiry job: open lots with an expiry, soonest first, across wallets.
            models.Index(
                fields=["expires_at"],
                name="creditlot_expiring_idx",
                condition=Q(remaining__gt=0, expires_at__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="creditlot_amount_positive"),
            models.CheckConstraint(
                condition=Q(priority__gte=0, priority__lte=100), name="creditlot_priority_0_100"
            ),
            models.CheckConstraint(
                condition=Q(category__in=["paid", "promotional"]), name="creditlot_category_known"
            ),
            models.CheckConstraint(
                condition=Q(debt_paid__gte=0, debt_paid__lte=models.F("amount")),
                name="creditlot_debt_paid_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(remaining__gte=0, remaining__lte=models.F("amount") - models.F("debt_paid")),
                name="creditlot_remaining_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"lot #{self.pk} {self.source} {self.remaining}/{self.amount}"


class LotAllocation(models.Model):
    """How much of a negative ledger row (a debit, an expiry, a negative adjustment) one lot gave.

    `lot` null: the part no live lot covered, which went into the wallet's debt. A row's allocations
    add up to -amount (check_ledger).
    """

    transaction = models.ForeignKey(
        CreditTransaction, on_delete=models.PROTECT, related_name="allocations", db_index=False
    )
    lot = models.ForeignKey(
        CreditLot, on_delete=models.PROTECT, null=True, blank=True, related_name="allocations", db_index=False
    )
    amount = MoneyField()

    class Meta:
        db_table = "billing_lotallocation"
        verbose_name = "lot allocation"
        indexes = [
            models.Index(fields=["transaction"], name="lotalloc_transaction_idx"),
            models.Index(fields=["lot"], name="lotalloc_lot_idx", condition=Q(lot__isnull=False)),
        ]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="lotalloc_amount_positive")]

    def __str__(self) -> str:
        return f"{self.amount} from lot #{self.lot_id} to row #{self.transaction_id}"


class Allowance(models.Model):
    """A recurring allowance staff define: `credits` per calendar period to each assigned user.

    Its `period` is fixed once it was issued: issues are unique per (allowance, user, period start),
    and another period type starts on another day, so a changed period would issue the same users
    again within the period they already had. `save()` refuses it whoever calls it; `clean()` says so
    on the field. `credits`, `expires_with_period` and the rest apply to the lots issued from then on.
    """

    class Period(models.TextChoices):
        DAY = "day", "day"
        WEEK = "week", "week"
        MONTH = "month", "month"

    # Said by the refusal and on the admin's period field: why, and what to do instead.
    PERIOD_LOCKED = (
        "Once an allowance was issued its period cannot change (its users would get a second lot in the "
        "current period): to change the period, deactivate this allowance and add a new one."
    )

    name = models.CharField(max_length=100, unique=True)
    credits = MoneyField()
    period = models.CharField(max_length=8, choices=Period.choices)
    expires_with_period = models.BooleanField(
        default=True, help_text="The period's credits expire when the period ends."
    )
    active = models.BooleanField(default=True)
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    groups = models.ManyToManyField(Group, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billing_allowance"
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="allowance_credits_positive"),
            models.CheckConstraint(
                condition=Q(period__in=["day", "week", "month"]), name="allowance_period_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits} per {self.period})"

    def save(self, *args, **kwargs):
        update_fields = kwargs.get("update_fields")
        if self._state.adding or (update_fields is not None and "period" not in update_fields):
            return super().save(*args, **kwargs)
        with transaction.atomic():
            self._refuse_period_change(lock=True)
            return super().save(*args, **kwargs)

    def clean(self):
        super().clean()
        try:
            self._refuse_period_change(lock=False)
        except AllowancePeriodLocked as exc:
            raise ValidationError({"period": exc.message}, code=exc.code) from exc

    def _refuse_period_change(self, *, lock: bool) -> None:
        """AllowancePeriodLocked if the stored row has another period than this instance and was issued.

        Locked (FOR UPDATE) when saving: an issue being written holds the row FOR KEY SHARE until it
        commits (services.allowances._issue), so the lock waits for it, and the check for issues, a
        later statement, sees it; an issue that starts after waits for this save's commit and then
        finds the period changed.
        """
        if self._state.adding or self.pk is None:
            return
        stored = Allowance.objects.filter(pk=self.pk)
        if lock:
            stored = stored.select_for_update()
        period = stored.values_list("period", flat=True).first()
        if period is None or period == self.period:
            return
        if AllowanceIssue.objects.filter(allowance_id=self.pk).exists():
            raise AllowancePeriodLocked(self.PERIOD_LOCKED, field="period")


class AllowanceIssue(models.Model):
    """One allowance issued to one user for one period: the unique row that makes it happen once."""

    allowance = models.ForeignKey(Allowance, on_delete=models.PROTECT, related_name="issues", db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    period_start = models.DateField()
    transaction = models.OneToOneField(CreditTransaction, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billing_allowanceissue"
        constraints = [
            models.UniqueConstraint(
                fields=["allowance", "user", "period_start"], name="allowanceissue_once_per_period"
            )
        ]

    def __str__(self) -> str:
        return f"allowance #{self.allowance_id} to user #{self.user_id} for {self.period_start}"
