"""A turn is a loop of model calls: tools the model asks for, each call reserved and billed as its own event."""

import threading
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from billing.models import CreditHold, CreditTransaction, LLMCallEvent, Wallet
from billing.reconcile import check_ledger
from sessions_app.models import Message, ToolCallEvent, Turn, TurnCall
from sessions_app.providers import EchoProvider, ProviderUnavailable
from tests.factories import ChatSessionFactory, UserFactory, client_for, fund

pytestmark = pytest.mark.django_db

NOTES = b"Budget 2026: travel 12,000 credits; tooling 8,500 credits. The offsite counts as training."


def upload(client, data=NOTES, name="budget.txt") -> int:
    response = client.post(
        "/api/v1/files/",
        {"file": SimpleUploadedFile(name, data, content_type="text/plain")},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def take(client, session, content, **extra):
    return client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": content}, format="json", **extra)


def debits_of(event_ids) -> Decimal:
    return -sum(
        CreditTransaction.objects.filter(kind="debit", llm_call_id__in=event_ids).values_list(
            "amount", flat=True
        ),
        Decimal(0),
    )


def test_a_file_with_a_nul_is_read_into_a_turn_as_a_replacement(user_client, user):
    # Its text went into the tool's result and the reply: the turn failed (500) after its first call was
    # charged, and a streamed one said nothing was charged.
    fund(user)
    file_id = upload(user_client, data=b"a\x00b", name="nul.txt")
    session = ChatSessionFactory(owner=user)
    response = take(user_client, session, f"read file {file_id}")
    assert response.status_code == 201, response.content
    assert "a\ufffdb" in response.json()["assistant_message"]["content"]
    assert check_ledger(user_id=user.pk).ok


def test_a_turn_that_searches_then_reads_a_file_bills_three_calls_that_add_up(user_client, user):
    fund(user)
    file_id = upload(user_client)
    session = ChatSessionFactory(owner=user)

    response = take(user_client, session, f"Please search for travel budget and read file {file_id}.")

    assert response.status_code == 201, response.content
    body = response.json()
    calls = body["usage"]["calls"]
    assert [c["purpose"] for c in calls] == ["chat", "tool_followup", "tool_followup"]
    assert all(
        set(c) == {"id", "purpose", "model", "input_tokens", "output_tokens", "cost", "used_fallback"}
        for c in calls
    )
    assert sum(Decimal(c["cost"]) for c in calls) == Decimal(body["usage"]["cost"]) > 0
    assert body["usage"]["input_tokens"] == sum(c["input_tokens"] for c in calls)
    assert body["usage"]["output_tokens"] == sum(c["output_tokens"] for c in calls)
    # Each call is its own event with its own debit row; together they are the turn's cost.
    event_ids = [c["id"] for c in calls]
    events = LLMCallEvent.objects.filter(pk__in=event_ids)
    assert sorted(events.values_list("purpose", flat=True)) == ["chat", "tool_followup", "tool_followup"]
    assert debits_of(event_ids) == Decimal(body["usage"]["cost"])
    assert CreditTransaction.objects.filter(kind="debit").count() == 3
    assert (
        Decimal(body["balance_after"])
        == Wallet.objects.get(user=user).balance
        == Decimal("10") - debits_of(event_ids)
    )
    # The tools ran, in order, and the answer carries what they returned.
    tools = body["tool_calls"]
    assert [(t["tool"], t["status"]) for t in tools] == [("search", "ok"), ("file_read", "ok")]
    assert tools[0]["arguments"] == {"query": "travel budget"}
    assert tools[1]["arguments"] == {"file_id": file_id}
    assert all(t["result_chars"] > 0 and t["latency_ms"] >= 0 and t["id"] for t in tools)
    assert "The offsite counts as training." in body["assistant_message"]["content"]
    assert f'file #{file_id} "budget.txt"' in body["assistant_message"]["content"]
    assert body["stop_reason"] == "complete"
    # The turn links every call in order; the rows agree with the answer.
    turn = Turn.objects.get(pk=body["id"])
    assert list(TurnCall.objects.filter(turn=turn).values_list("llm_call_id", flat=True)) == event_ids
    assert turn.llm_call_id == event_ids[0]
    assert list(ToolCallEvent.objects.filter(turn=turn).values_list("id", flat=True)) == [
        t["id"] for t in tools
    ]
    assert not CreditHold.objects.filter(status=CreditHold.Status.HELD).exists()
    assert check_ledger().ok
    # The turns list shows the same turn.
    listed = user_client.get(f"/api/v1/sessions/{session.pk}/turns/").json()["results"][0]
    assert listed["usage"] == body["usage"] and listed["tool_calls"] == body["tool_calls"]


def test_another_users_file_is_out_of_reach_of_search_and_file_read_in_a_turn(user_client, user):
    fund(user)
    owner = UserFactory()
    theirs = upload(
        client_for(owner), data=b"Confidential merger with Initech closes Friday.", name="merger.txt"
    )
    session = ChatSessionFactory(owner=user)

    body = take(user_client, session, f"search for merger Initech and read file {theirs}").json()

    assert [(t["tool"], t["status"]) for t in body["tool_calls"]] == [
        ("search", "ok"),
        ("file_read", "error"),
    ]
    reply = body["assistant_message"]["content"]
    assert "Confidential" not in reply and "Friday" not in reply and "merger.txt" not in reply
    assert f"No file with id {theirs} among your files." in reply
    assert "No files or messages of yours match" in reply
    # And through the files API: 404.
    assert user_client.get(f"/api/v1/files/{theirs}/content").status_code == 404


def test_an_ordinary_message_is_one_chat_call_with_no_tools(user_client, user):
    fund(user)
    session = ChatSessionFactory(owner=user)

    body = take(user_client, session, "Just say hello.").json()

    assert [c["purpose"] for c in body["usage"]["calls"]] == ["chat"]
    assert body["tool_calls"] == []


def test_at_most_llm_max_tool_steps_follow_ups_and_the_last_is_offered_no_tools(user_client, user, settings):
    settings.LLM_MAX_TOOL_STEPS = 1
    fund(user)
    file_id = upload(user_client)
    session = ChatSessionFactory(owner=user)

    body = take(user_client, session, f"search for budget and read file {file_id}").json()

    assert [c["purpose"] for c in body["usage"]["calls"]] == ["chat", "tool_followup"]
    assert [t["tool"] for t in body["tool_calls"]] == ["search"]
    assert body["stop_reason"] == "complete"


def test_with_no_tool_steps_no_tools_are_offered(user_client, user, settings):
    settings.LLM_MAX_TOOL_STEPS = 0
    fund(user)
    session = ChatSessionFactory(owner=user)

    body = take(user_client, session, "search for budget").json()

    assert [c["purpose"] for c in body["usage"]["calls"]] == ["chat"]
    assert body["tool_calls"] == []


class AlwaysAsks(EchoProvider):
    """A model that asks for a tool whether or not it is offered."""

    def complete(self, *, model, messages, max_output_tokens, tools=None):
        from sessions_app.providers import Completion, ToolCallRequest

        n = sum(1 for m in messages if m["role"] == "tool")
        call = ToolCallRequest(id=f"c{n}", name="search", arguments='{"query": "again"}')
        return Completion(text="Searching.", input_tokens=10, output_tokens=5, tool_calls=(call,))


def test_a_model_that_keeps_asking_is_stopped_after_the_steps_and_says_so(
    user_client, user, settings, monkeypatch
):
    settings.LLM_MAX_TOOL_STEPS = 2
    monkeypatch.setattr("sessions_app.services.get_provider", AlwaysAsks)
    fund(user)
    session = ChatSessionFactory(owner=user)

    body = take(user_client, session, "anything").json()

    assert [c["purpose"] for c in body["usage"]["calls"]] == ["chat", "tool_followup", "tool_followup"]
    assert len(body["tool_calls"]) == 2
    assert body["stop_reason"] == "tool_steps_exhausted"
    # All the model wrote, each call's words apart, then the note.
    assert body["assistant_message"]["content"].startswith(
        "Searching.\n\nSearching.\n\nSearching.\n\n[The answer stops"
    )
    assert debits_of([c["id"] for c in body["usage"]["calls"]]) == Decimal(body["usage"]["cost"])


def test_under_enforcement_a_follow_up_that_cannot_be_reserved_ends_the_turn_with_what_it_has(
    user_client, user, settings
):
    settings.CREDIT_ENFORCEMENT_ENABLED = True
    fund(user, "0.000001")  # enough to reserve the first call, not to pay for it
    file_id = upload(user_client)
    session = ChatSessionFactory(owner=user)

    response = take(user_client, session, f"search for budget and read file {file_id}")

    assert response.status_code == 201
    body = response.json()
    assert [c["purpose"] for c in body["usage"]["calls"]] == ["chat"]
    assert [t["tool"] for t in body["tool_calls"]] == ["search"]
    assert body["stop_reason"] == "insufficient_credits"
    assert "credits ran out" in body["assistant_message"]["content"]
    assert Decimal(body["balance_after"]) == Wallet.objects.get(user=user).balance < 0
    assert debits_of([c["id"] for c in body["usage"]["calls"]]) == Decimal(body["usage"]["cost"])
    assert not CreditHold.objects.filter(status=CreditHold.Status.HELD).exists()
    assert check_ledger().ok
    # The next turn is refused outright: its first call cannot be reserved.
    refused = take(user_client, session, "hello?")
    assert refused.status_code == 402
    assert Turn.objects.count() == 1


class FailsOnFollowUps(EchoProvider):
    def complete(self, *, model, messages, max_output_tokens, tools=None):
        if any(m["role"] == "tool" for m in messages):
            raise ProviderUnavailable("provider answered HTTP 500")
        return super().complete(
            model=model, messages=messages, max_output_tokens=max_output_tokens, tools=tools
        )


def test_a_follow_up_the_provider_fails_is_recorded_and_the_turn_completes_with_what_it_has(
    user_client, user, monkeypatch
):
    monkeypatch.setattr("sessions_app.services.get_provider", FailsOnFollowUps)
    fund(user)
    session = ChatSessionFactory(owner=user)

    response = take(user_client, session, "search for budget")

    assert response.status_code == 201
    body = response.json()
    calls = body["usage"]["calls"]
    assert [(c["purpose"], c["cost"] == "0.000000") for c in calls] == [
        ("chat", False),
        ("tool_followup", True),
    ]
    assert LLMCallEvent.objects.get(pk=calls[1]["id"]).status == "error"
    assert body["stop_reason"] == "provider_error"
    assert "provider failed" in body["assistant_message"]["content"]
    assert debits_of([c["id"] for c in calls]) == Decimal(body["usage"]["cost"])
    assert not CreditHold.objects.filter(status=CreditHold.Status.HELD).exists()


def test_a_failed_first_call_with_tools_offered_keeps_nothing(user_client, user, monkeypatch):
    class Down(EchoProvider):
        def complete(self, **kwargs):
            raise ProviderUnavailable("down")

    monkeypatch.setattr("sessions_app.services.get_provider", Down)
    fund(user)
    session = ChatSessionFactory(owner=user)

    assert take(user_client, session, "search for budget").status_code == 502
    assert not Message.objects.exists() and not Turn.objects.exists() and not ToolCallEvent.objects.exists()
    assert not CreditTransaction.objects.filter(kind="debit").exists()


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse")
def test_a_streamed_turn_runs_the_same_loop_and_done_is_the_plain_body(user_client, user):
    fund(user)
    file_id = upload(user_client)
    session = ChatSessionFactory(owner=user)

    response = take(
        user_client, session, f"search for budget and read file {file_id}", HTTP_ACCEPT="text/event-stream"
    )
    stream = b"".join(response).decode()

    assert response.status_code == 200
    import json

    blocks = [block.split("\n", 1) for block in stream.strip().split("\n\n")]
    assert blocks[-1][0] == "event: done"
    done = json.loads(blocks[-1][1].removeprefix("data: "))
    assert [c["purpose"] for c in done["usage"]["calls"]] == ["chat", "tool_followup", "tool_followup"]
    assert [t["tool"] for t in done["tool_calls"]] == ["search", "file_read"]
    text = "".join(
        json.loads(data.removeprefix("data: "))["text"] for name, data in blocks if name == "event: delta"
    )
    assert text == done["assistant_message"]["content"]
    assert debits_of([c["id"] for c in done["usage"]["calls"]]) == Decimal(done["usage"]["cost"])
    assert not CreditHold.objects.filter(status=CreditHold.Status.HELD).exists()


def test_an_idempotent_tool_turn_replays_its_first_body_and_charges_once(user_client, user):
    fund(user)
    session = ChatSessionFactory(owner=user)

    first = take(user_client, session, "search for budget", HTTP_IDEMPOTENCY_KEY="k-1")
    again = take(user_client, session, "search for budget", HTTP_IDEMPOTENCY_KEY="k-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert LLMCallEvent.objects.count() == 2  # chat + one follow-up, once


@pytest.mark.django_db(transaction=True)
def test_forty_racing_tool_turns_on_a_thin_wallet_overdraw_by_at_most_one_call(settings):
    """Under enforcement each call is reserved before it is made: the burst overdraws by one call at most."""
    from django.db import connection

    settings.CREDIT_ENFORCEMENT_ENABLED = True
    settings.LLM_MAX_OUTPUT_TOKENS = 64  # a tight worst case, so a hold is close to a call's cost
    from tests.factories import ModelPriceFactory

    ModelPriceFactory(model="echo-1")  # a transactional test may run after a flush of the seeded price
    user = UserFactory()
    fund(user, "0.6")  # a few whole tool turns
    file_id = upload(client_for(user), data=b"travel budget notes " * 20)
    sessions = [ChatSessionFactory(owner=user) for _ in range(40)]
    barrier = threading.Barrier(40)
    statuses = []

    def turn(session):
        try:
            client = client_for(user)
            barrier.wait()
            response = take(client, session, f"search for travel budget and read file {file_id}")
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=turn, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(statuses) == 40 and set(statuses) <= {201, 402}
    assert statuses.count(201) >= 1 and statuses.count(402) >= 1
    wallet = Wallet.objects.get(user=user)
    assert wallet.held == 0
    ok = LLMCallEvent.objects.filter(user=user, status="ok")
    assert ok.count() >= 3
    # A turn let in either answered or stopped short when a follow-up was refused. Whether any one of
    # them gets all its calls through depends on how the burst interleaves: not asserted.
    stops = Turn.objects.filter(session__owner=user).values_list("stop_reason", flat=True)
    assert len(stops) == statuses.count(201)
    assert set(stops) <= {Turn.StopReason.COMPLETE, Turn.StopReason.INSUFFICIENT_CREDITS}
    largest_hold = max(CreditHold.objects.filter(wallet=wallet).values_list("amount", flat=True))
    overdraw = -min(wallet.balance, Decimal(0))
    # The reservation gate lets a call through only while something is available, and every call in
    # flight holds its worst case: the wallet ends at most one call's worst-case cost (a hold) below 0.
    assert overdraw <= largest_hold
    total = sum(ok.values_list("cost", flat=True), Decimal(0))
    assert wallet.balance == Decimal("0.6") - total
    result = check_ledger()
    assert result.ok, result.discrepancies
    assert not CreditHold.objects.filter(status=CreditHold.Status.HELD).exists()
    # Every completed turn's cost is the sum of its calls and of their debit rows.
    for turn in Turn.objects.filter(session__owner=user):
        ids = list(TurnCall.objects.filter(turn=turn).values_list("llm_call_id", flat=True))
        assert debits_of(ids) == sum(
            LLMCallEvent.objects.filter(pk__in=ids).values_list("cost", flat=True), Decimal(0)
        )


def test_the_usage_summary_and_its_admin_page_split_cost_by_purpose(
    user_client, user, staff_client, admin_client
):
    fund(user)
    session = ChatSessionFactory(owner=user)
    body = take(user_client, session, "search for budget").json()
    chat, followup = (Decimal(c["cost"]) for c in body["usage"]["calls"])

    usage = staff_client.get("/api/v1/admin/usage/summary", {"bucket": "day"}).json()
    mine = staff_client.get("/api/v1/admin/usage/summary", {"bucket": "week", "user_id": user.pk}).json()

    for split in (usage["cost_by_purpose"], usage["daily"][0]["cost_by_purpose"], mine["cost_by_purpose"]):
        assert split == {
            "chat": f"{chat:.6f}",
            "tool_followup": f"{followup:.6f}",
            "summary": "0.000000",
            "api": "0.000000",
        }
    assert Decimal(usage["total_cost"]) == chat + followup
    page = admin_client.get("/admin/reporting/dailyusage/").content.decode()
    assert "Tool follow-ups" in page and f"{followup:.6f}" in page


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse")
def test_a_streamed_turn_sends_all_the_model_wrote_and_the_stop_note_as_its_reply_says(
    user_client, user, settings, monkeypatch
):
    import json

    settings.LLM_MAX_TOOL_STEPS = 2
    monkeypatch.setattr("sessions_app.services.get_provider", AlwaysAsks)
    fund(user)
    session = ChatSessionFactory(owner=user)

    response = take(user_client, session, "anything", HTTP_ACCEPT="text/event-stream")
    blocks = [block.split("\n", 1) for block in b"".join(response).decode().strip().split("\n\n")]

    done = json.loads(blocks[-1][1].removeprefix("data: "))
    text = "".join(
        json.loads(data.removeprefix("data: "))["text"] for name, data in blocks if name == "event: delta"
    )
    assert done["stop_reason"] == "tool_steps_exhausted"
    assert text == done["assistant_message"]["content"]
    assert text.startswith("Searching.\n\nSearching.\n\nSearching.\n\n[The answer stops here")


@pytest.mark.django_db(transaction=True)
def test_a_tool_turns_last_write_is_one_statement_with_its_tool_runs(user):
    """As served: the answering call's charge writes the messages, the turn, its calls and its tool
    runs, and commits on its own (no BEGIN or COMMIT anywhere in the turn)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import ModelPriceFactory, token_client_for

    ModelPriceFactory(model="echo-1")  # a transactional test may run after a flush of the seeded price
    fund(user)
    session = ChatSessionFactory(owner=user)
    client = token_client_for(user)
    take(client, session, "warm up")

    with CaptureQueriesContext(connection) as queries:
        response = take(client, session, "Please search for travel budget.")

    assert response.status_code == 201, response.content
    assert [q["sql"] for q in queries if q["sql"] in ("BEGIN", "COMMIT")] == []
    body = response.json()
    turn = Turn.objects.get(pk=body["id"])
    rows = list(turn.tool_calls.order_by("position").values("id", "position", "tool", "arguments", "status"))
    assert rows == [
        {
            "id": body["tool_calls"][0]["id"],
            "position": 0,
            "tool": "search",
            "arguments": {"query": "travel budget"},
            "status": "ok",
        }
    ]
    assert [c.llm_call_id for c in TurnCall.objects.filter(turn=turn).order_by("position")] == [
        c["id"] for c in body["usage"]["calls"]
    ]


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse")
def test_a_streamed_turn_that_fails_after_a_tool_call_says_what_stayed_charged(
    user_client, user, monkeypatch
):
    # Its error event said "nothing was charged" while the call that asked for the tool was.
    import json

    from sessions_app import streaming

    def broken(loop, key):
        raise RuntimeError("the turn's rows could not be written")

    monkeypatch.setattr(streaming, "_finish_and_render", broken)
    fund(user)
    session = ChatSessionFactory(owner=user)
    response = take(user_client, session, "search for budget", HTTP_ACCEPT="text/event-stream")
    blocks = [block.split("\n", 1) for block in b"".join(response).decode().strip().split("\n\n")]
    assert blocks[-1][0] == "event: error"
    error = json.loads(blocks[-1][1].removeprefix("data: "))
    assert error["code"] == "internal_error" and "The model call it had finished" in error["detail"]
    assert CreditTransaction.objects.filter(wallet__user=user, kind="debit").count() == 1
    assert not CreditHold.objects.filter(status=CreditHold.Status.HELD).exists()
    assert check_ledger(user_id=user.pk).ok


class EscapesInItsArguments(EchoProvider):
    """A model whose tool call's JSON arguments escape a NUL, a lone surrogate and a NUL in a key:
    valid JSON, decoded to what a jsonb value cannot hold."""

    def complete(self, *, model, messages, max_output_tokens, tools=None):
        from sessions_app.providers import Completion, ToolCallRequest

        if tools and not any(message["role"] == "tool" for message in messages):
            arguments = '{"query": "a\\u0000b \\ud800", "\\u0000": 1}'
            search = ToolCallRequest(id="c1\x00", name="search", arguments=arguments)
            return Completion(text="", input_tokens=10, output_tokens=5, tool_calls=(search,))
        return Completion(text="done", input_tokens=10, output_tokens=5, tool_calls=())


def test_tool_arguments_that_escape_a_nul_are_kept_as_replacements_and_the_turn_completes(
    user_client, user, monkeypatch
):
    """They failed the turn's write after its tool step was charged: a 500, a debit and no turn."""
    monkeypatch.setattr("sessions_app.services.get_provider", EscapesInItsArguments)
    fund(user, "10")
    session = ChatSessionFactory(owner=user)

    response = take(user_client, session, "find it")

    assert response.status_code == 201
    run = ToolCallEvent.objects.get()
    assert run.arguments == {"query": "a\ufffdb \ufffd", "\ufffd": 1} and run.call_id == "c1\ufffd"
    assert run.status == "error"  # the schema refuses the unknown key; the model hears why
    events = LLMCallEvent.objects.filter(user=user)
    assert events.count() == 2 and debits_of(events.values_list("id", flat=True)) == sum(
        e.cost for e in events
    )
    assert check_ledger().ok
