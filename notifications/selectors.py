"""Reads for the pages that show notifications (the console's customer page): wallet events and their deliveries."""

from django.db.models import Prefetch

from billing.models import WalletEvent
from notifications.models import Delivery


def events_with_deliveries(*, wallet_id: int, limit: int) -> list[WalletEvent]:
    """The wallet's newest events, each with its deliveries (`deliveries_sent`, by channel): two queries.

    An event with none has not been sent yet: its job waits for a worker, or no channel wants it.
    """
    return list(
        WalletEvent.objects.filter(wallet_id=wallet_id)
        .order_by("-id")
        .prefetch_related(
            Prefetch("deliveries", queryset=Delivery.objects.order_by("channel"), to_attr="deliveries_sent")
        )[:limit]
    )
