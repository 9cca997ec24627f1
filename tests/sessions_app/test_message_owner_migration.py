"""sessions_app 0008-0010 on a table that has messages: each gets its session's owner, the search indexes keyed by it."""

import importlib

import pytest
from django.db import connection

from sessions_app.models import Message
from tests.database import indexes_of, leaf_migrations, migrate
from tests.factories import ChatSessionFactory


def insert_without_owner(session, order: int) -> None:
    """A message as the code before 0008 writes one (a release still running while the next migrates)."""
    with connection.cursor() as cursor:
        cursor.execute(
            'INSERT INTO sessions_app_message (session_id, role, content, "order", created_at)'
            " VALUES (%s, 'user', 'hello', %s, now())",
            [session.pk, order],
        )


@pytest.mark.django_db(transaction=True)
def test_existing_messages_get_their_sessions_owner_and_old_writers_keep_working(user, monkeypatch):
    # One message a batch: the backfill's batches meet end to end.
    monkeypatch.setattr(
        importlib.import_module("sessions_app.migrations.0009_message_owner_filled"), "BATCH", 1
    )
    mine, theirs = ChatSessionFactory(owner=user), ChatSessionFactory()
    leaves = leaf_migrations()
    migrate([("sessions_app", "0007_call_links_without_db_constraint")])
    try:
        assert "message_content_search_idx" in indexes_of("sessions_app_message")
        insert_without_owner(mine, 0)
        insert_without_owner(theirs, 0)
        migrate([("sessions_app", "0008_message_owner")])
        insert_without_owner(mine, 1)  # written between the column and its backfill: filled on insert
    finally:
        migrate(leaves)
    insert_without_owner(theirs, 1)  # and after: NOT NULL does not refuse it

    owners = sorted(Message.objects.values_list("session_id", "order", "owner_id"))
    assert owners == sorted(
        [
            (mine.pk, 0, user.pk),
            (mine.pk, 1, user.pk),
            (theirs.pk, 0, theirs.owner_id),
            (theirs.pk, 1, theirs.owner_id),
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT is_nullable FROM information_schema.columns"
            " WHERE table_name = 'sessions_app_message' AND column_name = 'owner_id'"
        )
        assert cursor.fetchone() == ("NO",)
    assert "message_owner_search_idx" in indexes_of("sessions_app_message")
    assert "message_content_search_idx" not in indexes_of("sessions_app_message")
    assert "userfile_owner_search_idx" in indexes_of("sessions_app_userfile")
    assert "userfile_search_idx" not in indexes_of("sessions_app_userfile")
