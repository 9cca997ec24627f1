"""Admin building blocks every app's console uses."""

from core.replica import replica_or_primary


class ReadOnlyAdminMixin:
    """Rows only services write (wallets, the ledger, usage events): no add, edit or delete here, for anyone."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReplicaChangelistMixin:
    """A history list whose GET reads the replica (when healthy): rows a few seconds old are fine there.

    Only the changelist's GET: an action posts to the same view and must see the primary's rows. The
    queryset is pinned to the alias because the page's rows are read while the template renders.
    """

    def changelist_view(self, request, extra_context=None):
        if request.method in ("GET", "HEAD"):
            request.reads_replica = True
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if getattr(request, "reads_replica", False):
            return queryset.using(replica_or_primary())
        return queryset
