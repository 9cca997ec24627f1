"""manage.py migrate_locked (what `make serve` runs first): instances starting together migrate one at a time."""

import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from django.db import connection

from tests.live_server import ROOT, database_url

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def empty_database():
    """A database of its own, empty, on the test database's server; dropped afterwards."""
    name = f"creditdesk_migrate_{uuid.uuid4().hex[:8]}"
    params = connection.get_connection_params()
    server = {k: params[k] for k in ("user", "host", "port") if params.get(k)}
    if connection.settings_dict.get("PASSWORD"):
        server["password"] = connection.settings_dict["PASSWORD"]
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    test_db = connection.settings_dict["NAME"]
    try:
        yield database_url().replace(f"/{test_db}", f"/{name}", 1)
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_instances_migrating_at_once_both_start(empty_database):
    # Plain `migrate` twice at once on an empty database: one died on a duplicate key (a type or a
    # content type made twice) and that instance never started.
    env = {**os.environ, "DATABASE_URL": empty_database, "WORKER_DATABASE_URL": "", "SECRET_KEY": "x"}
    runs = [
        subprocess.Popen(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", "migrate_locked", "-v", "0"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    check = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "migrate", "--check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr  # nothing left to apply
