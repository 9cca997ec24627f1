"""Credits bought through Stripe Checkout: one row per purchase, from the pending checkout to its ledger row."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.models.fields import MoneyField
from billing.models.ledger import CreditTransaction


class Purchase(models.Model):
    """A purchase of whole credits; `transaction` is its `purchase` ledger row, set once, when it is paid.

    Written only by billing.services.purchases: pending when the user starts a checkout, then paid (by
    the signed `checkout.session.completed` webhook, under this row's lock, in the transaction that
    appends the ledger row) or expired. `amount` is what the user pays, in `currency`.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        PAID = "paid", "paid"
        EXPIRED = "expired", "expired"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="purchases")
    credits = models.PositiveIntegerField()
    amount = MoneyField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    # Null until the create call returns (or a webhook about it arrives first, naming it).
    stripe_session_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    checkout_url = models.TextField(blank=True, default="")
    transaction = models.OneToOneField(
        CreditTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="purchase"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "billing_purchase"
        indexes = [models.Index(fields=["user", "-id"], name="purchase_user_id_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="purchase_credits_positive"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="purchase_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "paid", "expired"]), name="purchase_status_known"
            ),
            # Paid means credited: the ledger row and the payment time come with the status, never apart.
            models.CheckConstraint(
                condition=(
                    Q(status="paid", transaction__isnull=False, paid_at__isnull=False)
                    | Q(~Q(status="paid"), transaction__isnull=True, paid_at__isnull=True)
                ),
                name="purchase_paid_has_transaction",
            ),
        ]

    def __str__(self) -> str:
        return f"Purchase {self.pk}: {self.credits} credits ({self.status})"
