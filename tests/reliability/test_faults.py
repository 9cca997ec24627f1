"""Faults under load (CI size): the provider misbehaving, a worker SIGKILLed mid-turn, a charge's
connection terminated. The full size is `make reliability` (bench/faults.py --full)."""

import logging

import pytest

from bench import faults, load

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def world(live_database_url):
    return load.seed_world(users=faults.CI_SIZE["users"], hot=faults.CI_SIZE["hot"])


def test_provider_timeouts_failures_garbage_and_hangs_charge_nothing(live_database_url, world):
    size = dict(faults.CI_SIZE, requests=300)
    outcome = faults.provider_faults(live_database_url, world, size)
    logger.info(outcome.text())

    assert any(line.startswith("check_ledger clean") for line in outcome.invariants)


def test_a_worker_killed_mid_turn_leaves_a_hold_that_expires_and_nothing_else(live_database_url, world):
    outcome = faults.worker_kills(live_database_url, world, dict(faults.CI_SIZE, requests=300))
    logger.info(outcome.text())

    assert any(line.startswith("check_ledger clean") for line in outcome.invariants)


def test_a_connection_terminated_mid_charge_writes_nothing_and_the_service_answers_again(
    live_database_url, world
):
    outcome = faults.terminate_during_charge(live_database_url, world, faults.CI_SIZE)
    logger.info(outcome.text())

    assert any(line.startswith("check_ledger clean") for line in outcome.invariants)
