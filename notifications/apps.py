"""Wallet events delivered by webhook and email, and the site-wide background chores."""

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"

    def ready(self):
        from billing.models import WalletEvent
        from billing.signals import wallet_events_recorded
        from notifications import receivers

        # Billing announces each event it records (it may not import us); we defer its delivery.
        wallet_events_recorded.connect(
            receivers.deliver_recorded_events, sender=WalletEvent, dispatch_uid="notifications_deliver_events"
        )
