"""The task queue (procrastinate over our PostgreSQL): jobs deferred in the caller's transaction, workers' own connection.

Jobs are deferred through Django's connection (procrastinate's DjangoConnector), in web processes and
in workers alike, so a job commits or rolls back with the write that caused it. A worker (`manage.py procrastinate worker`) needs long-lived
connections and LISTEN/NOTIFY, which PgBouncer in transaction mode does not carry: it connects by
WORKER_DATABASE_URL when that is set (the server itself), else by the default database's settings.
"""

from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from procrastinate import PsycopgConnector
from procrastinate.contrib.django import app
from procrastinate.contrib.django.django_connector import DjangoConnector
from procrastinate.contrib.django.utils import connector_params
from procrastinate.jobs import JobDeferrer
from procrastinate.manager import JobManager

# A worker's own pool: one connection listens, the others fetch and finish jobs (a handful, per DESIGN).
WORKER_POOL_MAX_SIZE = 4


def worker_connection_kwargs() -> dict[str, Any]:
    """Where a worker connects: WORKER_DATABASE_URL when set, else the default database (DATABASE_URL)."""
    pool = {"min_size": 1, "max_size": WORKER_POOL_MAX_SIZE}
    if settings.WORKER_DATABASE_URL:
        return {"conninfo": settings.WORKER_DATABASE_URL, **pool}
    return {"kwargs": connector_params("default"), **pool}


class WorkerAwareConnector(DjangoConnector):
    """Django's connection for deferring; for `manage.py procrastinate ...`, a pool of direct connections."""

    def get_worker_connector(self) -> PsycopgConnector:
        return PsycopgConnector(**worker_connection_kwargs())


def on_app_ready(procrastinate_app) -> None:
    """PROCRASTINATE_ON_APP_READY: swap in the connector that knows where workers connect."""
    connector = WorkerAwareConnector(alias=procrastinate_app.connector.alias)
    procrastinate_app.connector = procrastinate_app.job_manager.connector = connector


# The jobs this code defers go through Django's connection, wherever it runs. In a worker process
# procrastinate points the app (and its job manager) at the worker's own pool: a job a chore defers
# (a wallet event's delivery, recorded in the chore's transaction) was written there and committed at
# once, before the event it names existed, or though its transaction rolled back.
_ON_DJANGOS_CONNECTION = JobManager(DjangoConnector(alias=DEFAULT_DB_ALIAS))


def defer(task_name: str, *, lock: str | None = None, **task_kwargs) -> int:
    """Defer a job by its task's name on Django's connection: it commits or rolls back with the caller's transaction."""
    job = app.configure_task(task_name, lock=lock).job
    return JobDeferrer(job_manager=_ON_DJANGOS_CONNECTION, job=job).defer(**task_kwargs)
