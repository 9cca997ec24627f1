"""The queue's plumbing: where workers connect, jobs deferred in the caller's transaction, the periodic guards."""

import pytest
from django.core.management import get_commands

from billing.models import WalletEvent
from billing.signals import wallet_events_recorded
from core import queue
from notifications import tasks


def test_workers_connect_by_worker_database_url_when_set(settings):
    settings.WORKER_DATABASE_URL = "postgres://worker@db-direct:5432/creditdesk"
    kwargs = queue.worker_connection_kwargs()
    assert kwargs["conninfo"] == "postgres://worker@db-direct:5432/creditdesk"
    assert "kwargs" not in kwargs


def test_workers_fall_back_to_the_default_database_without_worker_database_url(settings):
    settings.WORKER_DATABASE_URL = ""
    kwargs = queue.worker_connection_kwargs()
    default = settings.DATABASES["default"]
    assert "conninfo" not in kwargs
    assert kwargs["kwargs"]["dbname"] == default["NAME"]
    assert kwargs["kwargs"].get("host") == default["HOST"]


def test_the_procrastinate_command_uses_the_worker_connector():
    from procrastinate.contrib.django import app

    assert isinstance(app.connector, queue.WorkerAwareConnector)
    assert (
        queue.WorkerAwareConnector().get_worker_connector()._pool_args["max_size"]
        == queue.WORKER_POOL_MAX_SIZE
    )


def test_the_delivery_task_is_registered_and_billings_announcement_reaches_it():
    from procrastinate.contrib.django import app

    assert tasks.deliver_wallet_event.name in app.tasks
    assert wallet_events_recorded.has_listeners(WalletEvent)  # notifications' receiver, connected in ready()


@pytest.mark.django_db
def test_prune_idempotency_keys_job_is_a_no_op_until_the_command_exists():
    exists = tasks.PRUNE_IDEMPOTENCY_KEYS_COMMAND in get_commands()
    assert tasks.prune_idempotency_keys(timestamp=0) is exists
