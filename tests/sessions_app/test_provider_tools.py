"""Providers and tools: the echo model's simulated choice, and the OpenAI client passing tools and reading
tool calls against the fake OpenAI-compatible server (bench/fake_openai.py), plain and streamed."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from bench.fake_openai import FakeOpenAIServer
from billing.models import CreditHold
from billing.reconcile import check_ledger
from sessions_app import files
from sessions_app.providers import EchoProvider, echo_tool_choices
from sessions_app.tools import tool_specs
from tests.factories import ChatSessionFactory, fund

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "text, choices",
    [
        ("hello", []),
        ("Please search for budget 2026.", [("search", {"query": "budget 2026"})]),
        ("read file #12 please", [("file_read", {"file_id": 12})]),
        (
            "search for travel costs and read file 7",
            [("search", {"query": "travel costs"}), ("file_read", {"file_id": 7})],
        ),
        ("read file 3 then search for cats", [("file_read", {"file_id": 3}), ("search", {"query": "cats"})]),
    ],
)
def test_echo_asks_for_the_tools_the_message_names_in_order(text, choices):
    assert echo_tool_choices(text) == choices


def test_echo_asks_one_tool_per_call_then_answers_with_the_results():
    echo, tools = EchoProvider(), tool_specs()
    messages = [{"role": "user", "content": "search for budget and read file 7"}]

    first = echo.complete(model="echo-1", messages=messages, max_output_tokens=100, tools=tools)
    messages += [
        {"role": "assistant", "content": "", "tool_calls": [first.tool_calls[0].as_message_item()]},
        {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "found file #7"},
    ]
    second = echo.complete(model="echo-1", messages=messages, max_output_tokens=100, tools=tools)
    messages += [
        {"role": "assistant", "content": "", "tool_calls": [second.tool_calls[0].as_message_item()]},
        {"role": "tool", "tool_call_id": second.tool_calls[0].id, "content": "the file's text"},
    ]
    third = echo.complete(model="echo-1", messages=messages, max_output_tokens=100, tools=tools)
    unoffered = echo.complete(model="echo-1", messages=messages[:1], max_output_tokens=100)

    assert [c.name for c in first.tool_calls] == ["search"] and first.text == ""
    assert json.loads(first.tool_calls[0].arguments) == {"query": "budget"}
    assert [c.name for c in second.tool_calls] == ["file_read"]
    assert third.tool_calls == () and "[search] found file #7" in third.text
    assert "[file_read] the file's text" in third.text
    assert unoffered.tool_calls == ()  # no tools offered: it answers
    assert third.input_tokens > first.input_tokens


@pytest.fixture(scope="module")
def fake_model():
    server = FakeOpenAIServer(stall_seconds=1.0).start()
    yield server
    server.stop()


@pytest.fixture
def openai(fake_model):
    with override_settings(LLM_PROVIDER="openai", LLM_BASE_URL=fake_model.base_url, LLM_TIMEOUT_SECONDS=5):
        yield fake_model


@pytest.fixture
def funded_session(user):
    fund(user)
    return ChatSessionFactory(owner=user)


def notes(user):
    data = b"The offsite counts as training, not travel."
    return files.upload_file(
        owner=user, uploaded=SimpleUploadedFile("notes.txt", data, content_type="text/plain")
    )


def test_openai_passes_tools_and_runs_the_tool_calls_it_reads(openai, user_client, user, funded_session):
    row = notes(user)
    content = f'What about the offsite? [tool:search {{"query": "offsite"}}] [tool:file_read {{"file_id": {row.pk}}}]'

    response = user_client.post(
        f"/api/v1/sessions/{funded_session.pk}/turns/", {"content": content}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert [c["purpose"] for c in body["usage"]["calls"]] == ["chat", "tool_followup", "tool_followup"]
    assert [(t["tool"], t["status"]) for t in body["tool_calls"]] == [("search", "ok"), ("file_read", "ok")]
    assert "The offsite counts as training, not travel." in body["assistant_message"]["content"]
    # The provider's own usage is billed: the fake counts the tool results in its prompt tokens.
    assert body["usage"]["calls"][2]["input_tokens"] > body["usage"]["calls"][0]["input_tokens"]
    assert check_ledger().ok


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse")
def test_openai_streams_tool_calls_in_pieces_and_the_loop_runs_them(
    openai, user_client, user, funded_session
):
    row = notes(user)
    content = f'Read it. [tool:file_read {{"file_id": {row.pk}}}]'

    response = user_client.post(
        f"/api/v1/sessions/{funded_session.pk}/turns/",
        {"content": content},
        format="json",
        HTTP_ACCEPT="text/event-stream",
    )
    stream = b"".join(response).decode()

    blocks = [block.split("\n", 1) for block in stream.strip().split("\n\n")]
    assert blocks[-1][0] == "event: done", stream
    done = json.loads(blocks[-1][1].removeprefix("data: "))
    assert [c["purpose"] for c in done["usage"]["calls"]] == ["chat", "tool_followup"]
    assert done["tool_calls"][0]["arguments"] == {"file_id": row.pk}
    assert "not travel" in done["assistant_message"]["content"]
    assert not CreditHold.objects.filter(status=CreditHold.Status.HELD).exists()
