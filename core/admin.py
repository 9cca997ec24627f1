"""Admin building blocks every app's console uses."""


class ReadOnlyAdminMixin:
    """Rows only services write (wallets, the ledger, usage events): no add, edit or delete here, for anyone."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
