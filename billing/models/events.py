"""Wallet events: a wallet crossing a balance line, recorded once for delivery."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.models.fields import MoneyField
from billing.models.ledger import Wallet


class WalletEvent(models.Model):
    """A wallet crossing a line (low balance, empty, back above), recorded once in the transaction that moved it.

    Written only by billing.services.crossings under the wallet's row lock, so each crossing is one
    row; delivery (webhook, email) is background work keyed by `uuid`, which receivers dedupe on.
    """

    class Type(models.TextChoices):
        LOW_BALANCE = "wallet.low_balance", "wallet.low_balance"
        DEPLETED = "wallet.depleted", "wallet.depleted"
        REPLENISHED = "wallet.replenished", "wallet.replenished"
        SPEND_CAP_THRESHOLD = "wallet.spend_cap_threshold", "wallet.spend_cap_threshold"

    uuid = models.UUIDField(unique=True, editable=False)
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="events")
    type = models.CharField(max_length=32, choices=Type.choices)
    balance_before = MoneyField()
    balance = MoneyField()  # the balance right after the move that crossed
    threshold = MoneyField()  # LOW_BALANCE_THRESHOLD when it crossed; a spending cap's amount
    # A spending cap's alert: the percent of the cap the period's charges reached (50, 80, 100).
    percent = models.PositiveSmallIntegerField(null=True, blank=True)
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
                condition=Q(
                    type__in=[
                        "wallet.low_balance",
                        "wallet.depleted",
                        "wallet.replenished",
                        "wallet.spend_cap_threshold",
                    ]
                ),
                name="walletevent_type_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"
