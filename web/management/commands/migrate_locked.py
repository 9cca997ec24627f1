"""manage.py migrate_locked: `migrate`, one process at a time, however many instances start at once.

Two instances started together (a rolling deploy, `make serve` on two machines) each ran `migrate`,
and one died on a duplicate key (`django_content_type`'s type made twice). This one takes a
PostgreSQL advisory lock on a connection of its own, held while `migrate` runs: the others wait for
it, then find nothing left to do. A session lock needs a session, which PgBouncer in transaction mode
does not keep: the lock is taken by WORKER_DATABASE_URL (PostgreSQL itself) when it is set, else by
the default database's settings.
"""

import time

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

# Any number: only one migrate runs at a time on a database.
MIGRATE_LOCK = 7_205_251_002
POLL_SECONDS = 0.5


class Command(BaseCommand):
    help = "Run migrate with a database-wide lock, so that instances starting together migrate one at a time."

    def handle(self, *args, **options):
        if settings.WORKER_DATABASE_URL:
            params = {"conninfo": settings.WORKER_DATABASE_URL}
        else:
            params = connection.get_connection_params()
        with psycopg.connect(**params, autocommit=True) as lock:
            # Tried, not waited for in one statement: a statement waiting would keep a snapshot open,
            # and the holder's CREATE INDEX CONCURRENTLY waits for every older snapshot to end (a
            # deadlock PostgreSQL cannot see: the two sides of the holder are one process).
            while not lock.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATE_LOCK]).fetchone()[0]:
                time.sleep(POLL_SECONDS)
            call_command("migrate", interactive=False, verbosity=options["verbosity"], stdout=self.stdout)
            lock.execute("SELECT pg_advisory_unlock(%s)", [MIGRATE_LOCK])
