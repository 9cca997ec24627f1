"""The console's customer page hangs on a proxy of the user: its own admin URL, list and "view customer" permission."""

from accounts.models import User


class Customer(User):
    """No table of its own: a user as support sees them (web.admin.CustomerAdmin), read-only."""

    class Meta:
        proxy = True
        verbose_name = "customer"
        verbose_name_plural = "customers"
        # A customer page is only ever read; money moves through billing's forms it links to.
        default_permissions = ("view",)
