"""Load through the real server (CI size): gunicorn on the test database, concurrent clients, invariants.

The full size is `make reliability` (bench/load.py --full); both run the same driver and checks.
"""

import logging

import pytest

from bench import load

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_load_through_gunicorn_loses_and_doubles_no_credit(live_database_url):
    size = load.CI_SIZE
    world = load.seed_world(users=size["users"], hot=size["hot"])
    server = load.start_server(database_url=live_database_url, workers=size["workers"])
    try:
        result = load.Driver(server.base_url, world).run(
            total=size["requests"], concurrency=size["concurrency"], max_seconds=300
        )
        invariants = load.check_all(result, server.base_url, world.staff_token)
    finally:
        server.stop()
    logger.info(load.report("load (CI size)", result, size["concurrency"], invariants))

    assert result.requests == size["requests"]
    assert not result.connection_errors
    # Only keyed grants may be refused (409: the key was first taken with the other amount, which the
    # driver sends on purpose); check_grants has already pinned that each key kept one row.
    assert set(result.errors()) <= {409}
    assert {op for (op, status) in result.statuses if status == 409} <= {"grant_key", "grant_conflict"}
    assert len(result.turns) > 0 and any(g["replayed"] for g in result.grants)
