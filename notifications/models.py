"""Deliveries of billing's wallet events: one row per event and channel, with its attempts, last error and state."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.models import WalletEvent


class Delivery(models.Model):
    """Where one wallet event went (or is still going): its webhook POST, or its email to the user."""

    class Channel(models.TextChoices):
        WEBHOOK = "webhook", "webhook"
        EMAIL = "email", "email"

    class State(models.TextChoices):
        PENDING = "pending", "pending"  # not tried yet, or tried and to be retried
        DELIVERED = "delivered", "delivered"
        DEAD = "dead", "dead"  # every try failed; an operator may redeliver
        SKIPPED = "skipped", "skipped"  # nowhere to send it (no WEBHOOK_URL, no email address)

    event = models.ForeignKey(WalletEvent, on_delete=models.PROTECT, related_name="deliveries")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "notifications_delivery"
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["state", "-id"], name="delivery_state_id_idx")]
        constraints = [
            models.UniqueConstraint(fields=["event", "channel"], name="delivery_event_channel_uniq"),
            models.CheckConstraint(
                condition=Q(channel__in=["webhook", "email"]), name="delivery_channel_known"
            ),
            models.CheckConstraint(
                condition=Q(state__in=["pending", "delivered", "dead", "skipped"]),
                name="delivery_state_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} of event #{self.event_id} ({self.state})"
