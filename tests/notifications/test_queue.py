"""The queue's plumbing: where workers connect, jobs deferred in the caller's transaction, the periodic guards."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import WalletEvent
from billing.signals import wallet_events_recorded
from core import queue
from notifications import tasks
from sessions_app import tasks as sessions_tasks
from sessions_app.models import TurnRequest


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


def test_each_app_runs_its_own_periodic_chores_with_the_same_ids_and_schedules():
    from procrastinate.contrib.django import app

    schedules = {
        (name, periodic_id): periodic.cron
        for (name, periodic_id), periodic in app.periodic_registry.periodic_tasks.items()
    }
    assert schedules == {
        ("notifications.retry_stalled_jobs", "retry_stalled_jobs"): "* * * * * */10",
        ("billing.release_expired_holds", "release_expired_holds"): "* * * * *",
        ("billing.expire_credit_lots", "expire_credit_lots"): "* * * * *",
        ("billing.issue_allowances", "issue_allowances"): "* * * * *",
        ("sessions_app.prune_idempotency_keys", "prune_idempotency_keys"): "17 * * * *",
        ("billing.check_ledger", "check_ledger"): "40 3 * * *",
        ("billing.ensure_call_event_partitions", "ensure_call_event_partitions"): "17 2 * * *",
        ("core.prune_rate_limits", "prune_rate_limits"): "23 * * * *",
        ("notifications.clear_sessions", "clear_sessions"): "10 4 * * *",
        ("notifications.delete_old_jobs", "delete_old_jobs"): "20 4 * * *",
    }


@pytest.mark.django_db
def test_prune_idempotency_keys_job_prunes_what_the_command_prunes(user):
    old = timezone.now() - timedelta(hours=25)
    common = {"user": user, "content_hash": "h", "attempt": "00000000-0000-0000-0000-000000000001"}
    TurnRequest.objects.create(
        key="old-done", state="done", response={}, completed_at=old, created_at=old, **common
    )
    TurnRequest.objects.create(key="fresh", state="done", response={}, completed_at=timezone.now(), **common)

    assert sessions_tasks.prune_idempotency_keys(timestamp=0) == 1
    assert list(TurnRequest.objects.values_list("key", flat=True)) == ["fresh"]


@pytest.mark.django_db(transaction=True)
def test_a_job_deferred_inside_a_worker_commits_or_rolls_back_with_the_callers_transaction(user, clean_queue):
    """A worker points procrastinate's app at its own pool (replace_connector, as `procrastinate worker`
    does); a chore's wallet event had its delivery job written there, committed before the event and
    kept though the chore's transaction rolled back."""
    from django.db import connection, transaction
    from procrastinate.contrib.django import app
    from procrastinate.testing import InMemoryConnector

    from billing import services
    from tests.factories import StaffUserFactory, fund

    fund(user, "2")
    staff = StaffUserFactory()

    def jobs() -> list[int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT (args->>'event_id')::bigint FROM procrastinate_jobs ORDER BY id")
            return [row[0] for row in cursor.fetchall()]

    worker_pool = InMemoryConnector()
    with app.replace_connector(worker_pool):
        with pytest.raises(RuntimeError), transaction.atomic():
            services.adjust(user=user, amount="-1.5", reason="a chore that fails", initiated_by=staff)
            assert WalletEvent.objects.exists()  # the wallet crossed the low line: an event and its job
            raise RuntimeError("the chore fails after recording")
        assert jobs() == [] and not WalletEvent.objects.exists()

        services.adjust(user=user, amount="-1.5", reason="a chore that commits", initiated_by=staff)

    assert jobs() == list(WalletEvent.objects.order_by("id").values_list("id", flat=True)) != []
    assert worker_pool.jobs == {}  # nothing went through the worker's own connector
