"""The tool registry and the two tools: each reads only the calling user's data, bounded, with clear errors."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions_app import files, selectors
from sessions_app.models import Message
from sessions_app.selectors import search_own_content
from sessions_app.tools import Tool, ToolContext, register, registered, run_tool, tool_specs
from sessions_app.tools.file_read import READ_MAX_CHARS
from tests.factories import ChatSessionFactory, UserFactory
from tests.plans import assert_reads_at_most

pytestmark = pytest.mark.django_db


def put(user, text: str, name: str = "notes.txt"):
    return files.upload_file(
        owner=user, uploaded=SimpleUploadedFile(name, text.encode(), content_type="text/plain")
    )


def say(session, content: str, order: int, role: str = "user"):
    return Message.objects.create(
        session=session, owner=session.owner, role=role, content=content, order=order
    )


def run(user, name: str, **arguments):
    return run_tool(
        context=ToolContext(user=user, session_id=0), call_id="c1", name=name, arguments=json.dumps(arguments)
    )


def test_both_tools_are_registered_once_at_start_up_with_openai_specs():
    assert {"search", "file_read"} <= set(registered())
    specs = {spec["function"]["name"]: spec for spec in tool_specs()}
    assert specs["search"]["type"] == "function"
    assert specs["search"]["function"]["parameters"]["required"] == ["query"]
    assert specs["file_read"]["function"]["parameters"]["required"] == ["file_id"]


def test_registering_another_tool_under_a_taken_name_is_refused():
    with pytest.raises(RuntimeError):
        register(Tool(name="search", description="", parameters={"type": "object"}, function=lambda c, a: ""))


def test_search_finds_own_files_and_messages_ranked(user):
    own = put(
        user, "Quarterly budget: the marketing budget grows, the budget for travel shrinks.", "budget.txt"
    )
    put(user, "Holiday plans and a beach.", "holiday.txt")
    session = ChatSessionFactory(owner=user, title="Planning")
    say(session, "What was our budget for travel last year?", 0)

    result = run(user, "search", query="budget")

    assert result.ok, result.result
    assert f'file #{own.pk} "budget.txt"' in result.result
    assert f'message in session #{session.pk} "Planning"' in result.result
    assert "holiday" not in result.result.lower()
    # The file with three mentions ranks above the message with one.
    assert result.result.index("budget.txt") < result.result.index("Planning")


def test_search_never_returns_another_users_files_or_messages(user):
    other = UserFactory()
    put(other, "Secret merger plans with Initech.", "secret.txt")
    say(ChatSessionFactory(owner=other), "Our merger with Initech closes Friday.", 0)

    result = run(user, "search", query="merger Initech")

    assert result.ok
    assert result.result.startswith("No files or messages of yours match")
    assert "secret" not in result.result.lower() and "Friday" not in result.result


def test_search_reads_only_its_users_rows_not_every_users_matches(user):
    """Other users' matches are never read: the search costs what the user's own rows cost."""
    for _ in range(30):  # 600 other messages and 20 files that match
        other_session = ChatSessionFactory()
        Message.objects.bulk_create(
            Message(
                session=other_session, owner=other_session.owner, role="user", content=f"budget {n}", order=n
            )
            for n in range(20)
        )
    for n in range(20):
        put(other_session.owner, f"The budget, part {n}.", f"other{n}.txt")
    for _ in range(4):  # the user's own history: 200 messages, 3 of them about the budget
        session = ChatSessionFactory(owner=user)
        Message.objects.bulk_create(
            Message(session=session, owner=user, role="user", content=f"travel notes {n}", order=n)
            for n in range(50)
        )
    for n in range(3):
        say(session, f"our budget for travel, item {n}", 50 + n)
    put(user, "Travel budget.", "mine.txt")
    with connection.cursor() as cursor:  # the planner's statistics, as a real table has them
        cursor.execute("ANALYZE sessions_app_message, sessions_app_userfile")

    with CaptureQueriesContext(connection) as queries:
        hits = search_own_content(user=user, query="budget", limit=10)

    assert sorted(hit.kind for hit in hits) == ["file", "message", "message", "message"]
    newest_sql, files_sql, ranked_sql = (q["sql"] for q in queries)
    assert_reads_at_most("sessions_app_userfile", files_sql, 1)
    assert_reads_at_most("sessions_app_message", newest_sql, 3)  # the owner's key of the index
    assert_reads_at_most("sessions_app_message", ranked_sql, 3)  # those three, by key


def test_search_ranks_only_the_newest_matching_messages(user, monkeypatch):
    """A long history's matches are not all ranked: the best of the newest SEARCH_MESSAGES_RANKED win."""
    monkeypatch.setattr(selectors, "SEARCH_MESSAGES_RANKED", 4)
    session = ChatSessionFactory(owner=user, title="History")
    old = [say(session, "budget budget budget, the budget again", n) for n in range(3)]
    newer = [say(session, f"a budget note {n}", 3 + n) for n in range(4)]

    hits = search_own_content(user=user, query="budget", limit=10)

    assert {hit.id for hit in hits} == {message.pk for message in newer}
    assert {hit.title for hit in hits} == {"History"}
    monkeypatch.setattr(selectors, "SEARCH_MESSAGES_RANKED", 10)
    best = search_own_content(user=user, query="budget", limit=3)
    assert {hit.id for hit in best} == {message.pk for message in old}  # they rank first when reached


def test_search_results_are_bounded(user):
    session = ChatSessionFactory(owner=user)
    for n in range(30):
        say(session, f"invoice number {n} " + "filler words " * 200, n)

    result = run(user, "search", query="invoice", limit=10)

    assert result.result.count("\n- ") == 10
    assert len(result.result) <= 4000


def test_file_read_reads_own_file_bounded_with_a_way_to_read_on(user):
    row = put(user, "A" * READ_MAX_CHARS + "TAIL")

    first = run(user, "file_read", file_id=row.pk)
    rest = run(user, "file_read", file_id=row.pk, offset=READ_MAX_CHARS)

    assert first.ok and "A" * 100 in first.result and "TAIL" not in first.result
    assert f"offset={READ_MAX_CHARS}" in first.result
    assert rest.ok and rest.result.endswith("TAIL")


def test_file_read_of_another_users_file_is_the_same_error_as_a_missing_one(user):
    theirs = put(UserFactory(), "their confidential numbers")

    other = run(user, "file_read", file_id=theirs.pk)
    missing = run(user, "file_read", file_id=theirs.pk + 1000)

    assert not other.ok and not missing.ok
    assert "confidential" not in other.result
    assert other.result.replace(str(theirs.pk), "N") == missing.result.replace(str(theirs.pk + 1000), "N")
    assert other.result == f"Error: No file with id {theirs.pk} among your files."


@pytest.mark.parametrize(
    "name, arguments, message",
    [
        ("nope", "{}", "There is no tool named 'nope'"),
        ("file_read", "not json", "not valid JSON"),
        ("file_read", "[1]", "must be a JSON object"),
        ("file_read", '{"file_id": "seven"}', "Invalid arguments"),
        ("search", '{"query": "x", "extra": 1}', "Invalid arguments"),
        # JSON Schema's own "integer" takes 5.0, which the tool then failed on ("failed unexpectedly").
        ("search", '{"query": "x", "limit": 5.0}', "limit: 5.0 is not of type 'integer'"),
        ("file_read", '{"file_id": 1, "offset": 1.0}', "offset: 1.0 is not of type 'integer'"),
        ("file_read", '{"file_id": true}', "file_id: True is not of type 'integer'"),
    ],
)
def test_bad_calls_are_tool_errors_the_model_reads(user, name, arguments, message):
    result = run_tool(
        context=ToolContext(user=user, session_id=0), call_id="c", name=name, arguments=arguments
    )
    assert not result.ok
    assert message in result.result
