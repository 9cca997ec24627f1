"""Reporting fixtures: a hand-placed set of LLM call events around local day, week and month cuts."""

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from billing.models import LLMCallEvent
from billing.rollup import rebuild_usage_rollup
from tests.factories import LLMCallEventFactory, UserFactory

NEW_YORK = ZoneInfo("America/New_York")


def new_york(year, month, day, hour=0, minute=0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK)


@pytest.fixture
def new_york_events(db, settings):
    """Events in January 2026, REPORT_TIME_ZONE America/New_York (UTC-5 then).

    Two of them sit 23:30 and 00:30 local on either side of midnight: both fall on 2026-01-06 in
    UTC, so only a local cut tells them apart. Range used by the tests: 2026-01-05 .. 2026-02-01.
    """
    settings.REPORT_TIME_ZONE = "America/New_York"
    alice, bob, carol = (
        UserFactory(username="alice"),
        UserFactory(username="bob"),
        UserFactory(username="carol"),
    )

    def event(user, when, *, model="echo-1", input_tokens=0, output_tokens=0, cost="0", ok=True):
        return LLMCallEventFactory(
            user=user,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=Decimal(cost),
            status=LLMCallEvent.Status.OK if ok else LLMCallEvent.Status.ERROR,
            created_at=when,
            rollups=False,
        )

    # Out of range on both sides in local time (the first is 04:59 UTC on the 5th: a UTC cut would
    # wrongly count it).
    event(carol, new_york(2026, 1, 4, 23, 59), input_tokens=999, output_tokens=999, cost="9")
    event(carol, new_york(2026, 2, 2, 0, 0), input_tokens=999, output_tokens=999, cost="9")
    # Monday 2026-01-05, 23:30 local (04:30 UTC on the 6th).
    event(alice, new_york(2026, 1, 5, 23, 30), input_tokens=100, output_tokens=50, cost="0.125")
    # Tuesday 2026-01-06, 00:30 local (05:30 UTC on the 6th), and a failed call by alice later on.
    event(bob, new_york(2026, 1, 6, 0, 30), input_tokens=200, output_tokens=100, cost="0.25")
    event(alice, new_york(2026, 1, 6, 10, 0), ok=False)
    # Sunday 2026-01-11: still the week of Monday the 5th.
    event(alice, new_york(2026, 1, 11, 12, 0), input_tokens=10, output_tokens=5, cost="0.0125")
    # Monday 2026-01-12: the next week; another model.
    event(
        bob,
        new_york(2026, 1, 12, 9, 0),
        model="gpt-4.1-mini",
        input_tokens=1000,
        output_tokens=1000,
        cost="2",
    )
    # Tuesday 2026-01-20: a day with only a failed call.
    event(carol, new_york(2026, 1, 20, 12, 0), model="gpt-4.1-mini", ok=False)
    # Sunday 2026-02-01: in the week of Monday 2026-01-26, in the month of February.
    event(carol, new_york(2026, 2, 1, 8, 0), input_tokens=7, output_tokens=3, cost="1.000001")
    rebuild_usage_rollup()  # the factory writes events alone; a recorded call would keep the rollups
    return {"alice": alice, "bob": bob, "carol": carol}
