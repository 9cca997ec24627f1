"""Taking a turn: the reply, the debit, the response shape, limits, and the query budget."""

from decimal import Decimal

import pytest
from django.db import DataError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from billing import services as billing_services
from billing.models import CreditTransaction, LLMCallEvent, ModelPrice, Wallet
from billing.selectors import known_price
from billing.services import compute_cost
from sessions_app import providers, selectors
from sessions_app.models import ChatSession, Message, Turn
from sessions_app.providers import Completion, count_tokens
from sessions_app.selectors import HISTORY_MAX_MESSAGES, turn_context
from tests.factories import ChatSessionFactory, ModelPriceFactory, fund
from tests.plans import assert_reads_at_most, execute_as_prepared, plan_as_kept

pytestmark = pytest.mark.django_db


def nothing_written():
    return not (Message.objects.exists() or Turn.objects.exists() or LLMCallEvent.objects.exists()) and not (
        CreditTransaction.objects.filter(kind="debit").exists()
    )


@pytest.fixture
def session(user):
    return ChatSessionFactory(owner=user)


@pytest.mark.parametrize("suffix", ["/", ""])
def test_turn_replies_debits_and_reports_usage(user_client, user, session, suffix):
    fund(user, "10")
    content = "Hello there, model!"

    response = user_client.post(
        f"/api/v1/sessions/{session.pk}/turns{suffix}", {"content": content}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {
        "id", "session", "created_at", "user_message", "assistant_message", "usage", "tool_calls", "stop_reason",
        "balance_after", "low_balance",
    }  # fmt: skip
    reply = f"Echo: {content}"
    assert body["session"] == session.pk
    assert body["user_message"] == {"role": "user", "content": content}
    assert body["assistant_message"] == {"role": "assistant", "content": reply}
    price = ModelPrice.objects.get(model="echo-1")
    cost = compute_cost(price=price, input_tokens=count_tokens(content), output_tokens=count_tokens(reply))
    assert cost > 0
    debit = CreditTransaction.objects.get(kind="debit")
    assert body["usage"] == {
        "model": "echo-1",
        "input_tokens": count_tokens(content),
        "output_tokens": count_tokens(reply),
        "cost": f"{cost:.6f}",
        "calls": [
            {
                "id": debit.llm_call_id,
                "purpose": "chat",
                "model": "echo-1",
                "input_tokens": count_tokens(content),
                "output_tokens": count_tokens(reply),
                "cost": f"{cost:.6f}",
                "used_fallback": False,
            }
        ],
    }
    assert (body["tool_calls"], body["stop_reason"]) == ([], "complete")
    assert debit.amount == -cost
    assert body["balance_after"] == f"{Decimal('10') - cost:.6f}" == f"{debit.balance_after:.6f}"
    assert body["low_balance"] is False
    turn = Turn.objects.get(pk=body["id"])
    assert turn.llm_call == debit.llm_call
    assert (turn.user_message.order, turn.assistant_message.order) == (0, 1)


@override_settings(LOW_BALANCE_THRESHOLD=Decimal("9.999999"))
def test_low_balance_follows_the_threshold(user_client, user, session):
    fund(user, "10")

    body = user_client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "hi"}, format="json").json()

    assert Decimal(body["balance_after"]) < Decimal("10")
    assert body["low_balance"] is True


def test_history_is_sent_as_context_and_bounded(user, session, monkeypatch):
    seen = []

    class Recorder:
        name = "echo"

        def complete(self, *, model, messages, max_output_tokens, tools=None):
            seen.append(list(messages))
            return Completion(text="ok", input_tokens=1, output_tokens=1)

    monkeypatch.setattr(providers, "get_provider", lambda: Recorder())
    monkeypatch.setattr("sessions_app.services.get_provider", lambda: Recorder())
    from sessions_app.services import take_turn

    for n in range(HISTORY_MAX_MESSAGES):
        take_turn(session=session, user=user, content=f"message {n}")

    last = seen[-1]
    assert len(last) == HISTORY_MAX_MESSAGES + 1
    assert last[-1] == {"role": "user", "content": f"message {HISTORY_MAX_MESSAGES - 1}"}
    assert last[-2] == {"role": "assistant", "content": "ok"}
    assert seen[1] == [
        {"role": "user", "content": "message 0"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "message 1"},
    ]
    orders = list(Message.objects.filter(session=session).values_list("order", flat=True))
    assert orders == list(range(2 * HISTORY_MAX_MESSAGES))


def test_history_read_is_bounded_in_a_long_session_whatever_the_plan(user, session, monkeypatch):
    """A session's history read touches its last HISTORY_MAX_MESSAGES messages, not all of them.

    The statistics describe many short sessions (as a real table's do), so a plan that sorts the
    session's every message looks cheap; the read must stay bounded in a session 600 messages long.
    """
    for other in ChatSessionFactory.create_batch(100):
        Message.objects.bulk_create(
            Message(session=other, owner=other.owner, role="user", content="hi", order=n) for n in range(2)
        )
    Message.objects.bulk_create(
        Message(session=session, owner=user, role=("user", "assistant")[n % 2], content=f"m{n}", order=n)
        for n in range(600)
    )
    ChatSession.objects.filter(pk=session.pk).update(message_count=600)
    sent = plan_as_kept(monkeypatch, selectors, analyze="sessions_app_message, sessions_app_chatsession")
    context = turn_context(user=user, session_id=session.pk)

    assert [m["content"] for m in context.history] == [f"m{n}" for n in range(580, 600)]
    ((sql, params),) = sent.items()
    assert_reads_at_most("sessions_app_message", execute_as_prepared(sql, params), HISTORY_MAX_MESSAGES)


def test_list_turns_oldest_first_with_usage(user_client, user, session):
    for text in ["first", "second"]:
        user_client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": text}, format="json")

    response = user_client.get(f"/api/v1/sessions/{session.pk}/turns")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [t["user_message"]["content"] for t in results] == ["first", "second"]
    assert set(results[0]) == {
        "id", "session", "created_at", "user_message", "assistant_message", "usage", "tool_calls", "stop_reason",
    }  # fmt: skip
    assert results[0]["usage"]["model"] == "echo-1"
    assert [c["purpose"] for c in results[0]["usage"]["calls"]] == ["chat"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "This field is required."),
        ({"content": ""}, "This field may not be blank."),
        ({"content": "   \n\t "}, "This field may not be blank."),
        ({"content": 42}, "Must be a string."),
        ({"content": 4.2}, "Must be a string."),
        ({"content": True}, "Must be a string."),
        ({"content": None}, "This field may not be null."),
        ({"content": ["hi"]}, "Must be a string."),
        ({"content": {"text": "hi"}}, "Must be a string."),
        ({"content": "x" * 32_001}, "Ensure this field has no more than 32000 characters."),
        ({"content": "nul \x00 byte"}, "Null characters are not allowed."),
    ],
)
def test_turn_rejects_bad_content_and_writes_nothing(user_client, session, body, message):
    response = user_client.post(f"/api/v1/sessions/{session.pk}/turns/", body, format="json")

    assert response.status_code == 400
    assert response.json() == {"content": [message]}
    assert nothing_written()


def test_turn_accepts_exactly_32000_characters(user_client, session):
    response = user_client.post(
        f"/api/v1/sessions/{session.pk}/turns/", {"content": "y" * 32_000}, format="json"
    )

    assert response.status_code == 201
    assert len(response.json()["user_message"]["content"]) == 32_000


@pytest.mark.parametrize(
    "raw", ['{"content": NaN}', '{"content": Infinity}', '{"content": -Infinity}', "[]", '"hi"', "", "{bad"]
)
def test_turn_rejects_invalid_json_and_writes_nothing(user_client, session, raw):
    response = user_client.generic(
        "POST", f"/api/v1/sessions/{session.pk}/turns/", raw, content_type="application/json"
    )

    assert response.status_code == 400
    assert nothing_written()


def test_turn_rejects_a_body_over_one_megabyte_with_413(user_client, session):
    response = user_client.post(
        f"/api/v1/sessions/{session.pk}/turns/", {"content": "z" * (1024 * 1024)}, format="json"
    )

    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    assert nothing_written()


def test_turn_on_a_model_whose_price_was_withdrawn_is_400(user_client, session):
    ModelPrice.objects.filter(model="echo-1").update(active=False)

    response = user_client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "hi"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "price_not_found"
    assert nothing_written()


def test_a_price_changed_after_this_process_read_it_charges_the_new_price(user_client, user, session):
    fund(user, "10")
    assert (
        user_client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "a"}, format="json").status_code
        == 201
    )
    old = ModelPrice.objects.get(model="echo-1", active=True)
    assert known_price(model="echo-1").input_price_per_1k == old.input_price_per_1k  # known as it was
    ModelPrice.objects.filter(pk=old.pk).update(
        input_price_per_1k=Decimal("7"), output_price_per_1k=Decimal("9")
    )
    new = ModelPrice.objects.get(pk=old.pk)

    response = user_client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "b"}, format="json")

    assert response.status_code == 201
    event = LLMCallEvent.objects.get(pk=response.json()["usage"]["calls"][0]["id"])
    assert (event.input_price_per_1k, event.output_price_per_1k) == (Decimal("7"), Decimal("9"))
    assert event.cost == compute_cost(
        price=new, input_tokens=event.input_tokens, output_tokens=event.output_tokens
    )
    assert known_price(model="echo-1").input_price_per_1k == Decimal("7")  # the reservation refreshed it


def test_a_price_withdrawn_after_this_process_read_it_is_400_and_holds_nothing(user_client, user, session):
    fund(user, "10")
    assert (
        user_client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "a"}, format="json").status_code
        == 201
    )
    assert known_price(model="echo-1") is not None
    ModelPrice.objects.filter(model="echo-1").update(active=False)
    events, debits = LLMCallEvent.objects.count(), CreditTransaction.objects.filter(kind="debit").count()

    response = user_client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "b"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "price_not_found"
    assert LLMCallEvent.objects.count() == events
    assert CreditTransaction.objects.filter(kind="debit").count() == debits
    assert Turn.objects.count() == 1
    wallet = Wallet.objects.get(user=user)
    assert wallet.held == 0
    assert not wallet.holds.filter(status="held").exists()


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
def test_a_turn_whose_worst_case_cannot_be_held_is_400_and_writes_nothing(user_client, user, accept):
    # At the largest price, an output cap past its check (10^12 tokens) makes a worst case of 10^15
    # credits: the hold overflowed numeric(20,6) and the turn answered a 500 (DataError).
    ModelPriceFactory(model="dear-1", input_price_per_1k=Decimal(10**6), output_price_per_1k=Decimal(10**6))
    session = ChatSessionFactory(owner=user, model="dear-1")
    fund(user, "10")

    with override_settings(LLM_MAX_OUTPUT_TOKENS=10**12):
        response = user_client.post(
            f"/api/v1/sessions/{session.pk}/turns/", {"content": "hi"}, format="json", HTTP_ACCEPT=accept
        )

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "call_too_costly"
    assert (
        "'dear-1'" in body["detail"] and "1000000.000000" in body["detail"] and "max_tokens" in body["detail"]
    )
    assert nothing_written()
    wallet = Wallet.objects.get(user=user)
    assert wallet.held == 0 and not wallet.holds.exists()


def test_the_session_row_counts_its_history_characters(user_client, user, session):
    fund(user, "10")
    for content in ("short", "a longer message with more characters", "ünïcödé ✓"):
        response = user_client.post(
            f"/api/v1/sessions/{session.pk}/turns/", {"content": content}, format="json"
        )
        assert response.status_code == 201

    session.refresh_from_db()
    assert session.message_chars == sum(len(m.content) for m in Message.objects.filter(session=session))
    assert session.message_count == 6


# The token; the session with its history (sessions_app, one query); the reservation (billing, one
# statement: the credit gate, and the model's active price); then billing's charge, which writes
# the turn's own rows in the same statement (the event, the hold settled, the wallet UPDATE ...
# RETURNING, the ledger row, the usage rollups; the message order, both messages, the turn) and,
# sent with no transaction open, commits as it ends: no BEGIN, no COMMIT
# (test_turn_query_budget_in_a_real_transaction counts them, as Django logs them).
TURN_QUERIES = 4


def test_turn_query_budget(token_client, user, session, django_assert_max_num_queries):
    fund(user, "5")
    token_client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "warm up"}, format="json")

    with django_assert_max_num_queries(TURN_QUERIES):
        response = token_client.post(
            f"/api/v1/sessions/{session.pk}/turns/", {"content": "count me"}, format="json"
        )
    assert response.status_code == 201


@pytest.mark.django_db(transaction=True)
def test_turn_query_budget_in_a_real_transaction(user, django_assert_num_queries):
    from rest_framework.test import APIClient

    from tests.factories import api_token

    ModelPriceFactory(model="echo-1")  # a transactional test may run after a flush of the seeded price
    session = ChatSessionFactory(owner=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "warm up"}, format="json")

    with django_assert_num_queries(TURN_QUERIES):
        response = client.post(
            f"/api/v1/sessions/{session.pk}/turns/", {"content": "count me"}, format="json"
        )
    assert response.status_code == 201


def test_turn_list_query_budget(token_client, user, session, django_assert_max_num_queries):
    for n in range(5):
        token_client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": f"t{n}"}, format="json")

    # token, session, count, one joined page, its calls, its tool runs: no query per turn.
    with django_assert_max_num_queries(6):
        response = token_client.get(f"/api/v1/sessions/{session.pk}/turns/")
    assert len(response.json()["results"]) == 5


@pytest.mark.django_db(transaction=True)
def test_provider_is_called_outside_any_transaction(user, monkeypatch):
    from rest_framework.test import APIClient

    ModelPriceFactory(model="echo-1")  # a transactional test may run after a flush of the seeded price
    session = ChatSessionFactory(owner=user)
    states = []

    class Probe:
        name = "echo"

        def complete(self, *, model, messages, max_output_tokens, tools=None):
            states.append(connection.in_atomic_block)
            return Completion(text="ok", input_tokens=3, output_tokens=1)

    monkeypatch.setattr("sessions_app.services.get_provider", lambda: Probe())
    client = APIClient()
    client.force_authenticate(user)

    response = client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "hi"}, format="json")

    assert response.status_code == 201
    assert states == [False]
    assert Wallet.objects.get(user=user).balance < 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_turns_of_one_session_both_land_in_order(user, monkeypatch):
    import threading

    from django.db import connections

    from sessions_app.services import take_turn

    ModelPriceFactory(model="echo-1")
    session = ChatSessionFactory(owner=user)
    both_called = threading.Barrier(2, timeout=10)

    class Together:
        name = "echo"

        def complete(self, *, model, messages, max_output_tokens, tools=None):
            both_called.wait()  # both turns read the same history before either writes
            return Completion(text="ok", input_tokens=10, output_tokens=5)

    monkeypatch.setattr("sessions_app.services.get_provider", lambda: Together())
    errors = []

    def run(text):
        try:
            take_turn(session=session, user=user, content=text)
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(f"turn {n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert errors == []
    assert sorted(Message.objects.filter(session=session).values_list("order", flat=True)) == [0, 1, 2, 3]
    assert Turn.objects.filter(session=session).count() == 2
    assert CreditTransaction.objects.filter(wallet__user=user, kind="debit").count() == 2
    session.refresh_from_db()
    assert session.message_count == 4


def test_a_session_deleted_during_its_turn_is_404_and_the_call_stays_metered(user_client, user, monkeypatch):
    session = ChatSessionFactory(owner=user)

    class DeletesMidCall:
        name = "echo"

        def complete(self, *, model, messages, max_output_tokens, tools=None):
            type(session).objects.filter(pk=session.pk).delete()  # the user deletes it in another tab
            return Completion(text="too late", input_tokens=10, output_tokens=5)

    monkeypatch.setattr("sessions_app.services.get_provider", lambda: DeletesMidCall())

    response = user_client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "hi"}, format="json")

    assert response.status_code == 404
    assert "deleted" in response.json()["detail"]
    event = LLMCallEvent.objects.get(user=user)
    assert (event.status, event.input_tokens, event.output_tokens) == ("ok", 10, 5)
    assert CreditTransaction.objects.get(wallet__user=user, kind="debit").llm_call == event
    assert not Message.objects.exists()
    assert not Turn.objects.exists()


@pytest.mark.parametrize("low", [False, True])
def test_turn_response_equals_the_turn_as_stored(user_client, user, session, low):
    """The turn's answer is built from what the write returned: it must say what the database holds."""
    from rest_framework import serializers as drf

    from billing.selectors import is_low_balance
    from sessions_app.serializers import CreatedTurnSerializer

    fund(user, "0.05" if low else "10")
    user_client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "first"}, format="json")
    body = user_client.post(
        f"/api/v1/sessions/{session.pk}/turns/", {"content": "second\nline"}, format="json"
    ).json()

    stored = Turn.objects.select_related("user_message", "assistant_message", "llm_call").get(pk=body["id"])
    stored.balance_after = Wallet.objects.get(user=user).balance
    stored.low_balance = is_low_balance(stored.balance_after)
    generic = drf.ModelSerializer.to_representation(CreatedTurnSerializer(stored), stored)
    assert body == generic
    assert body["low_balance"] is low
    assert (stored.user_message.order, stored.assistant_message.order) == (2, 3)


def test_a_free_model_turn_keeps_its_messages_and_debits_nothing(user_client, user):
    """A call that costs nothing takes the ORM path on every database; the turn's rows come with it."""
    ModelPriceFactory(model="free-1", input_price_per_1k=Decimal("0"), output_price_per_1k=Decimal("0"))
    session = ChatSessionFactory(owner=user, model="free-1")

    first = user_client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "one"}, format="json")
    second = user_client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": "two"}, format="json")

    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()["usage"]["cost"] == "0.000000"
    assert second.json()["balance_after"] == "0.000000"
    orders = list(Message.objects.filter(session=session).order_by("order").values_list("order", "content"))
    assert [o for o, _ in orders] == [0, 1, 2, 3]
    assert orders[2][1] == "two"
    assert Turn.objects.filter(session=session).count() == 2
    assert not CreditTransaction.objects.filter(kind="debit").exists()
    assert Wallet.objects.get(user=user).held == 0


@pytest.mark.parametrize("session_id", ["999999", str(2**63), "9" * 30])
def test_a_turn_on_an_unknown_session_is_the_same_404_as_listing_its_turns(user_client, user, session_id):
    fund(user, "5")
    posted = user_client.post(f"/api/v1/sessions/{session_id}/turns/", {"content": "hi"}, format="json")
    listed = user_client.get(f"/api/v1/sessions/{session_id}/turns/")

    assert (posted.status_code, listed.status_code) == (404, 404)
    assert posted.json() == listed.json()
    assert nothing_written()


@pytest.mark.django_db(transaction=True)
def test_a_charge_with_no_transaction_open_commits_another_apps_rows_with_it_or_neither(user):
    from sessions_app.turn_rows import TurnText, after_charge

    ModelPriceFactory(model="echo-1")
    fund(user, "5")
    session = ChatSessionFactory(owner=user)
    text = TurnText(session=session, prompt="hi", reply="hello", stop_reason="complete", now=timezone.now())
    failing = billing_services.ThenWrite(
        ctes=", broken AS (SELECT 1 / 0 AS x)", columns=", (SELECT x FROM broken)", params={}
    )

    with pytest.raises(DataError):
        charge_echo_call(user, then=failing)
    assert not LLMCallEvent.objects.exists() and Wallet.objects.get(user=user).balance == 5

    charged = charge_echo_call(user, then=after_charge(text, earlier_events=[]))
    assert Turn.objects.get().llm_call_id == charged.event.pk
    assert list(Message.objects.order_by("order").values_list("content", flat=True)) == ["hi", "hello"]


def test_a_charges_parameters_cannot_be_overridden_by_the_rows_it_writes(user):
    ModelPriceFactory(model="echo-1")
    fund(user, "5")
    clashing = billing_services.ThenWrite(ctes="", columns="", params={"user_id": 0, "amount": 0})
    with pytest.raises(ValueError, match="amount, user_id"), transaction.atomic():
        charge_echo_call(user, then=clashing)
    assert not LLMCallEvent.objects.exists()


def charge_echo_call(user, *, then):
    """One echo-1 call of 10 + 10 tokens charged to `user`, writing `then`'s rows too."""
    return billing_services.charge(
        user=user,
        price=ModelPrice.objects.get(model="echo-1"),
        provider="echo",
        input_tokens=10,
        output_tokens=10,
        then=then,
    )
