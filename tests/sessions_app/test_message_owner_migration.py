"""sessions_app 0008-0009 on a table that has messages: each gets its session's owner, the search indexes keyed by it."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from sessions_app.models import Message
from tests.factories import ChatSessionFactory


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def indexes(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [table])
        return {name for (name,) in cursor.fetchall()}


@pytest.mark.django_db(transaction=True)
def test_existing_messages_get_their_sessions_owner(user):
    mine, theirs = ChatSessionFactory(owner=user), ChatSessionFactory()
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    migrate([("sessions_app", "0007_call_links_without_db_constraint")])
    try:
        assert "message_content_search_idx" in indexes("sessions_app_message")
        with connection.cursor() as cursor:
            for session, order in [(mine, 0), (mine, 1), (theirs, 0)]:
                cursor.execute(
                    'INSERT INTO sessions_app_message (session_id, role, content, "order", created_at)'
                    " VALUES (%s, 'user', 'hello', %s, now())",
                    [session.pk, order],
                )
    finally:
        migrate(leaves)

    owners = sorted(Message.objects.values_list("session_id", "owner_id"))
    assert owners == sorted([(mine.pk, user.pk), (mine.pk, user.pk), (theirs.pk, theirs.owner_id)])
    assert "message_owner_search_idx" in indexes("sessions_app_message")
    assert "message_content_search_idx" not in indexes("sessions_app_message")
    assert "userfile_owner_search_idx" in indexes("sessions_app_userfile")
    assert "userfile_search_idx" not in indexes("sessions_app_userfile")
