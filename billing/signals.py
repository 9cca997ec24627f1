"""Every path that creates a user (sign-up, admin, createsuperuser, factories) opens its wallet."""

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from billing.services import open_wallet


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="billing_open_wallet")
def open_wallet_for_new_user(sender, instance, created, raw=False, **kwargs):
    if created and not raw:
        open_wallet(user=instance)
