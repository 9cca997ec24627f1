"""Wallet events delivered by webhook and email, and the site-wide background chores."""

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"

    def ready(self):
        from billing.models import WalletEvent
        from billing.signals import wallet_events_recorded
        from notifications import (
            checks,  # noqa: F401  (registers the delivery settings' checks)
            receivers,
        )

        # Billing announces each event it records (it may not import us); we defer its delivery.
        wallet_events_recorded.connect(
            receivers.deliver_recorded_events, sender=WalletEvent, dispatch_uid="notifications_deliver_events"
        )

    def customer_page_section(self, *, customer, wallet_id: int) -> dict:
        """The console's customer page (web, a peer floor that may not import us) asks for this: the
        wallet's events and what was sent of each."""
        from notifications.selectors import events_with_deliveries

        return {
            "id": "notifications",
            "title": "Notifications",
            "template": "admin/web/customer/sections/notifications.html",
            "context": {"events": events_with_deliveries(wallet_id=wallet_id, limit=10)},
        }
