"""Billing's signals: the one it sends (wallet events recorded), and its receiver that opens every new user's wallet."""

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import Signal, receiver

# Sent by billing.services.crossings with `events` (the WalletEvent rows, saved) inside the transaction
# that recorded them, right after they are written: a receiver's writes (a delivery job) commit or roll
# back with them. Billing sits below the apps that act on it (notifications) and never imports them.
wallet_events_recorded = Signal()


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="billing_open_wallet")
def open_wallet_for_new_user(sender, instance, created, raw=False, **kwargs):
    """Every path that creates a user (sign-up, admin, createsuperuser, factories) opens its wallet."""
    if created and not raw:
        # Imported when called: billing.services imports this module (its crossings send the signal above).
        from billing.services import open_wallet

        open_wallet(user=instance)
