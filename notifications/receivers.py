"""notifications' receivers: each wallet event billing records gets its delivery job, in the same transaction."""

from notifications import services


def deliver_recorded_events(sender, *, events, **kwargs) -> None:
    """billing.signals.wallet_events_recorded: one delivery job per event, deferred inside billing's transaction."""
    for event in events:
        services.defer_delivery(event_id=event.pk)
