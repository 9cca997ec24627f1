"""bench/fleet_load.py's own reckoning: streams read to their last event, drill-failed grants set aside."""

from bench.fleet_load import sse_events, without_drill_failures
from bench.load import Result


def test_sse_events_reads_every_event_and_skips_done_markers():
    raw = (
        b'event: delta\ndata: {"text":"Echo"}\n\n'
        b'event: done\ndata: {"id":7,"usage":{"cost":"0.008000"}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert sse_events(raw) == [
        ("delta", {"text": "Echo"}),
        ("done", {"id": 7, "usage": {"cost": "0.008000"}}),
    ]


def grant(key, status):
    return {
        "user_id": 1,
        "key": key,
        "amount": "1.250000",
        "status": status,
        "transaction_id": None,
        "replayed": False,
    }


def test_without_drill_failures_drops_5xx_and_keys_that_only_failed():
    result = Result(
        grants=[grant("a", 200), grant("a", 502), grant("b", 502), grant(None, 503), grant(None, 200)]
    )
    kept = without_drill_failures(result).grants
    assert [(g["key"], g["status"]) for g in kept] == [("a", 200), (None, 200)]
