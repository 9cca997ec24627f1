"""Reads of deliveries for the pages that show them (the console's customer page)."""

from notifications.models import Delivery


def deliveries_for_wallet(*, wallet_id: int, limit: int) -> list[Delivery]:
    """The newest deliveries (webhook, email) of one wallet's events, with the event, in one query."""
    return list(
        Delivery.objects.filter(event__wallet_id=wallet_id).select_related("event").order_by("-id")[:limit]
    )
