"""Call events become range-partitioned by month on created_at (UTC months), rows and all.

The table is rebuilt in place, in this migration's transaction: the old one renamed aside, a
partitioned table created like it, one partition per month from its oldest row to three months
ahead plus a DEFAULT partition, the rows copied, the primary key (id, created_at) and the indexes
and foreign keys rebuilt under their old names, the old table dropped. Writers wait on the old
table's lock meanwhile (measured on 1M rows in docs/scaling-data.md). Every foreign key pointing at
the events was dropped before (billing 0019, sessions_app 0007): PostgreSQL lets a foreign key
reference a partitioned table only through a key that includes created_at.

Nothing here depends on this migration's number; the SQL is a frozen copy of what
billing/partitions.py does for the months that come later.
"""

from datetime import UTC, datetime

from django.db import migrations, models
from django.utils import timezone

TABLE = "billing_llmcallevent"
ASIDE = "billing_llmcallevent_unpartitioned"
MONTHS_AHEAD = 3


def _month_name(month: datetime) -> str:
    return f"{TABLE}_y{month:%Y}m{month:%m}"


def _next_month(month: datetime) -> datetime:
    return (
        month.replace(year=month.year + 1, month=1)
        if month.month == 12
        else month.replace(month=month.month + 1)
    )


def _rows(cursor, sql, params=()):
    cursor.execute(sql, params)
    return cursor.fetchall()


def partition(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        pointing = _rows(
            cursor,
            "SELECT conrelid::regclass::text, conname FROM pg_constraint"
            " WHERE confrelid = %s::regclass AND contype = 'f'",
            [TABLE],
        )
        if pointing:
            raise RuntimeError(
                f"Foreign keys still reference {TABLE}: {pointing}. Give each db_constraint=False in a "
                "migration that runs before this one (see sessions_app 0007), then migrate again."
            )
        indexes = _rows(
            cursor,
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname <> %s",
            [TABLE, f"{TABLE}_pkey"],
        )
        foreign_keys = _rows(
            cursor,
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype = 'f'",
            [TABLE],
        )
        (sequence,) = _rows(cursor, "SELECT pg_get_serial_sequence(%s, 'id')", [TABLE])[0]
        # Set aside: the names (indexes, the key, the sequence) are freed for the new table.
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        for name, _ in foreign_keys:
            cursor.execute(f'ALTER TABLE {TABLE} DROP CONSTRAINT "{name}"')
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {ASIDE}")
        cursor.execute(f"ALTER TABLE {ASIDE} RENAME CONSTRAINT {TABLE}_pkey TO {ASIDE}_pkey")
        cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO {ASIDE}_id_seq")
        cursor.execute(
            f"CREATE TABLE {TABLE} (LIKE {ASIDE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY)"
            " PARTITION BY RANGE (created_at)"
        )
        # One partition per month that has rows, and the months up to MONTHS_AHEAD after this one.
        oldest, newest = _rows(cursor, f"SELECT min(created_at), max(created_at) FROM {ASIDE}")[0]  # noqa: S608 - names of our own tables
        this_month = timezone.now().astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        last = this_month
        for _ in range(MONTHS_AHEAD):
            last = _next_month(last)
        month = this_month
        if oldest is not None:
            month = min(
                this_month, oldest.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            )
            newest_month = newest.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            last = max(last, newest_month)
        while month <= last:
            # DDL takes no parameters: the bounds are timestamps this function built.
            cursor.execute(
                f"CREATE TABLE {_month_name(month)} PARTITION OF {TABLE}"
                f" FOR VALUES FROM ('{month.isoformat()}') TO ('{_next_month(month).isoformat()}')"
            )
            month = _next_month(month)
        # A row outside every month (the job fell behind, a far-dated row) lands here rather than
        # failing a charge; the job moves such rows into their month's partition when it creates it.
        cursor.execute(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT")
        cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM {ASIDE}")  # noqa: S608 - names of our own tables
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence(%s, 'id'), coalesce(max(id), 0) + 1, false) FROM {TABLE}",  # noqa: S608 - names of our own tables
            [TABLE],
        )
        # Built after the copy (faster than maintaining them row by row).
        cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, created_at)")
        for _, definition in indexes:
            cursor.execute(definition)
        for name, definition in foreign_keys:
            cursor.execute(f'ALTER TABLE {TABLE} ADD CONSTRAINT "{name}" {definition}')
        cursor.execute(f"DROP TABLE {ASIDE}")


def unpartition(apps, schema_editor):
    """The reverse: one plain table again (detached months stay detached: their rows are not brought back)."""
    with schema_editor.connection.cursor() as cursor:
        indexes = _rows(
            cursor,
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname <> %s",
            [TABLE, f"{TABLE}_pkey"],
        )
        foreign_keys = _rows(
            cursor,
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype = 'f'",
            [TABLE],
        )
        cursor.execute(f"CREATE TABLE {ASIDE} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        cursor.execute(f"INSERT INTO {ASIDE} SELECT * FROM {TABLE}")  # noqa: S608 - names of our own tables
        (next_id,) = _rows(cursor, f"SELECT coalesce(max(id), 0) + 1 FROM {TABLE}")[0]  # noqa: S608 - names of our own tables
        cursor.execute(f"DROP TABLE {TABLE} CASCADE")
        cursor.execute(f"ALTER TABLE {ASIDE} RENAME TO {TABLE}")
        cursor.execute(
            f"ALTER TABLE {TABLE} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (START WITH {next_id})"
        )
        cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id)")
        for _, definition in indexes:
            cursor.execute(definition)
        for name, definition in foreign_keys:
            cursor.execute(f'ALTER TABLE {TABLE} ADD CONSTRAINT "{name}" {definition}')


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0023_call_event_links_without_db_constraint"),
    ]

    operations = [
        migrations.CreateModel(
            name="DetachedCallMonth",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("month", models.DateField(unique=True)),
                ("partition", models.CharField(max_length=63)),
                ("rows", models.BigIntegerField()),
                ("first_id", models.BigIntegerField(null=True)),
                ("last_id", models.BigIntegerField(null=True)),
                ("exported_to", models.CharField(max_length=500)),
                ("dropped", models.BooleanField(default=False)),
                ("detached_at", models.DateTimeField(default=timezone.now)),
            ],
            options={"db_table": "billing_detachedcallmonth", "ordering": ["-month"]},
        ),
        migrations.RunPython(partition, unpartition, elidable=False),
    ]
