"""Idempotent turns: one model call and one debit per Idempotency-Key, decided by the database."""

import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import CreditTransaction, LLMCallEvent
from billing.reconcile import check_ledger
from sessions_app import idempotency
from sessions_app.models import Turn, TurnRequest
from sessions_app.providers import Completion, ProviderTimeout
from tests.billing.test_concurrency import run_in_threads
from tests.factories import ChatSessionFactory, ModelPriceFactory, UserFactory

pytestmark = pytest.mark.django_db


class CountingProvider:
    name = "echo"

    def __init__(self, *, fail: Exception | None = None, gate: threading.Event | None = None):
        self.calls = 0
        self.fail = fail
        self.gate = gate
        self.lock = threading.Lock()

    def complete(self, *, model, messages, max_output_tokens, tools=None):
        with self.lock:
            self.calls += 1
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        return Completion(text="answer", input_tokens=12, output_tokens=7)


@pytest.fixture
def provider(monkeypatch):
    fake = CountingProvider()
    monkeypatch.setattr("sessions_app.services.get_provider", lambda: fake)
    return fake


@pytest.fixture
def session(user):
    ModelPriceFactory(model="echo-1")
    return ChatSessionFactory(owner=user)


def post(client, session, content="hello", key="k-1", **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(
        f"/api/v1/sessions/{session.pk}/turns/", {"content": content}, format="json", **headers, **extra
    )


def debits(user) -> int:
    return CreditTransaction.objects.filter(wallet__user=user, kind="debit").count()


def test_a_replay_answers_the_first_body_without_a_model_call_or_a_charge(
    user_client, user, session, provider
):
    first = post(user_client, session)
    again = post(user_client, session)

    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert provider.calls == 1
    assert debits(user) == 1
    assert Turn.objects.count() == 1
    request = TurnRequest.objects.get()
    assert (request.state, request.turn_id, request.response) == ("done", first.json()["id"], first.json())


def test_the_same_key_with_other_content_is_409_idempotency_conflict(user_client, user, session, provider):
    post(user_client, session, content="hello")
    response = post(user_client, session, content="something else")

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"
    assert provider.calls == 1 and debits(user) == 1


def test_the_same_key_in_another_session_is_a_conflict(user_client, user, session, provider):
    other = ChatSessionFactory(owner=user)
    post(user_client, session)
    response = post(user_client, other)
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"


def test_keys_are_scoped_to_the_user(user_client, user, session, provider):
    stranger = UserFactory()
    theirs = ChatSessionFactory(owner=stranger)
    client = APIClient()
    client.force_authenticate(stranger)

    assert post(user_client, session).status_code == 201
    assert post(client, theirs).status_code == 201
    assert provider.calls == 2


def test_a_duplicate_while_the_first_runs_is_409_request_in_progress(user_client, user, session, provider):
    TurnRequest.objects.create(
        user=user,
        key="k-1",
        content_hash=idempotency.content_hash(session_id=session.pk, content="hello"),
        attempt="00000000-0000-0000-0000-000000000001",
    )
    response = post(user_client, session)

    assert response.status_code == 409
    assert response.json()["code"] == "request_in_progress"
    assert provider.calls == 0 and debits(user) == 0


def test_an_abandoned_attempt_older_than_the_hold_ttl_is_taken_over(user_client, user, session, provider):
    stale = TurnRequest.objects.create(
        user=user,
        key="k-1",
        content_hash=idempotency.content_hash(session_id=session.pk, content="hello"),
        attempt="00000000-0000-0000-0000-000000000001",
        created_at=timezone.now() - timedelta(seconds=601),
    )
    response = post(user_client, session)

    assert response.status_code == 201
    stale.refresh_from_db()
    assert stale.state == "done" and str(stale.attempt) != "00000000-0000-0000-0000-000000000001"


@pytest.mark.parametrize("bad", ["", "x" * 256, "clé", "tab\there"])
def test_a_malformed_key_is_400_and_writes_nothing(user_client, user, session, provider, bad):
    response = post(user_client, session, key=bad)
    assert response.status_code == 400
    assert "idempotency_key" in response.json()
    assert provider.calls == 0 and not TurnRequest.objects.exists()


def test_a_failed_first_attempt_leaves_the_key_unused(user_client, user, session, provider):
    provider.fail = ProviderTimeout("slow")
    assert post(user_client, session).status_code == 504
    assert not TurnRequest.objects.exists()

    provider.fail = None
    response = post(user_client, session)
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert provider.calls == 2 and debits(user) == 1


@override_settings(CREDIT_ENFORCEMENT_ENABLED=True)
def test_a_402_first_attempt_leaves_the_key_unused(user_client, user, session, provider):
    assert post(user_client, session).status_code == 402
    assert not TurnRequest.objects.exists() and provider.calls == 0


def test_a_replay_is_answered_even_after_the_wallet_ran_dry(user_client, user, session, provider, settings):
    first = post(user_client, session)
    settings.CREDIT_ENFORCEMENT_ENABLED = True  # the wallet is now negative: a new turn would be 402
    again = post(user_client, session)
    assert again.status_code == 201 and again.json() == first.json()
    assert post(user_client, session, key="k-2").status_code == 402


def test_a_completion_that_cannot_be_recorded_rolls_the_whole_turn_back(
    user_client, user, session, monkeypatch
):
    class TakenOver(CountingProvider):
        def complete(self, **kwargs):
            # A retry took the claim over meanwhile (the attempt token changed).
            TurnRequest.objects.update(attempt="00000000-0000-0000-0000-000000000002")
            return super().complete(**kwargs)

    monkeypatch.setattr("sessions_app.services.get_provider", lambda: TakenOver())
    response = post(user_client, session)

    assert response.status_code == 409
    assert response.json()["code"] == "request_in_progress"
    assert debits(user) == 0 and not Turn.objects.exists()
    assert not LLMCallEvent.objects.filter(status="ok").exists()


def test_without_a_key_nothing_is_recorded(user_client, session, provider):
    assert post(user_client, session, key=None).status_code == 201
    assert not TurnRequest.objects.exists()


def test_prune_removes_done_keys_older_than_24_hours_and_keeps_the_rest(user, session):
    old = timezone.now() - timedelta(hours=25)
    common = {"user": user, "content_hash": "h", "attempt": "00000000-0000-0000-0000-000000000001"}
    TurnRequest.objects.create(
        key="old-done", state="done", response={}, completed_at=old, created_at=old, **common
    )
    TurnRequest.objects.create(key="old-stuck", created_at=old, **common)
    TurnRequest.objects.create(key="fresh", state="done", response={}, completed_at=timezone.now(), **common)

    call_command("prune_idempotency_keys")

    assert set(TurnRequest.objects.values_list("key", flat=True)) == {"fresh"}
    with pytest.raises(CommandError, match="at least 24 hours"):
        call_command("prune_idempotency_keys", "--older-than-hours", "1")
    for hours in ("20000000", "99999999999"):  # before year 1: a one-line refusal, not an OverflowError
        with pytest.raises(CommandError, match="before any date"):
            call_command("prune_idempotency_keys", "--older-than-hours", hours)


def test_the_database_refuses_a_second_row_for_one_key(user):
    from django.db import IntegrityError

    TurnRequest.objects.create(
        user=user, key="k", content_hash="h", attempt="00000000-0000-0000-0000-000000000001"
    )
    with pytest.raises(IntegrityError):
        TurnRequest.objects.create(
            user=user, key="k", content_hash="h", attempt="00000000-0000-0000-0000-000000000002"
        )


@pytest.mark.django_db(transaction=True)
def test_thirty_concurrent_retries_of_one_turn_call_the_model_once_and_charge_once(monkeypatch):
    user = UserFactory()
    ModelPriceFactory(model="echo-1")
    session = ChatSessionFactory(owner=user)
    gate = threading.Event()
    fake = CountingProvider(gate=gate)
    monkeypatch.setattr("sessions_app.services.get_provider", lambda: fake)

    def attempt():
        client = APIClient()
        client.force_authenticate(user)
        response = post(client, session, content="same question", key="retry-1")
        if fake.calls:
            gate.set()  # let the one running attempt finish once the others have raced it
        return response.status_code, response.headers.get("Idempotent-Replayed"), response.json()

    results = run_in_threads(30, [attempt] * 30)
    gate.set()

    statuses = sorted(status for status, _, _ in results)
    created = [body for status, replayed, body in results if status == 201 and replayed is None]
    replays = [body for status, replayed, body in results if status == 201 and replayed == "true"]
    refused = [body for status, _, body in results if status == 409]
    assert fake.calls == 1
    assert len(created) == 1
    assert len(replays) + len(refused) == 29, statuses
    assert all(body == created[0] for body in replays)
    assert all(body["code"] == "request_in_progress" for body in refused)
    assert CreditTransaction.objects.filter(wallet__user=user, kind="debit").count() == 1
    assert Turn.objects.filter(session=session).count() == 1
    result = check_ledger()
    assert result.ok, result.discrepancies
    connection.close()


# --- Streamed turns take the key too (API.md: the turns POST takes an optional Idempotency-Key) -----


def streamed(client, session, content="hello", key="s-1"):
    import json

    response = post(client, session, content=content, key=key, HTTP_ACCEPT="text/event-stream")
    blocks = [block.split("\n", 1) for block in b"".join(response).decode().strip().split("\n\n")]
    events = [
        (name.removeprefix("event: "), json.loads(data.removeprefix("data: "))) for name, data in blocks
    ]
    return response, events


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse")
def test_a_streamed_turn_with_a_key_replays_its_done_event_plainly_or_streamed(user_client, user, session):
    from tests.factories import fund

    fund(user)
    first, events = streamed(user_client, session)
    assert first.status_code == 200 and events[-1][0] == "done" and "Idempotent-Replayed" not in first
    done = events[-1][1]
    again, replay = streamed(user_client, session)
    assert again["Idempotent-Replayed"] == "true" and replay == [("done", done)]  # no model call
    plain = post(user_client, session, key="s-1")
    assert plain.status_code == 201 and plain["Idempotent-Replayed"] == "true" and plain.json() == done
    assert Turn.objects.count() == 1 and debits(user) == 1
    assert post(user_client, session, content="other", key="s-1").status_code == 409
    assert check_ledger(user_id=user.pk).ok


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse")
def test_a_streamed_turn_while_its_key_runs_is_409_and_one_never_read_frees_it(user_client, user, session):
    from tests.factories import close_unread, fund

    fund(user)
    claimed = idempotency.claim(user=user, key="s-2", session_id=session.pk, content="hello")
    busy = post(user_client, session, key="s-2", HTTP_ACCEPT="text/event-stream")
    assert busy.status_code == 409 and busy.json()["code"] == "request_in_progress"
    idempotency.release(claimed=claimed)
    # A stream whose client left before reading it asked the model nothing: its key is free again.
    unread = post(user_client, session, key="s-2", HTTP_ACCEPT="text/event-stream")
    assert unread.status_code == 200
    close_unread(unread)
    assert not TurnRequest.objects.filter(key="s-2").exists()
    response, events = streamed(user_client, session, key="s-2")
    assert events[-1][0] == "done" and "Idempotent-Replayed" not in response
    assert Turn.objects.count() == 1


@override_settings(CREDIT_ENFORCEMENT_ENABLED=True)
def test_a_402_streamed_attempt_leaves_its_key_unused(user_client, user, session):
    refused = post(user_client, session, key="s-3", HTTP_ACCEPT="text/event-stream")
    assert refused.status_code == 402 and not TurnRequest.objects.exists()


def test_an_attempt_taken_over_says_only_its_answer_went_uncharged(user, session):
    """Its finished tool steps were committed as they ended: "nothing was charged" was untrue for them."""
    first = idempotency.claim(user=user, key="k-1", session_id=session.pk, content="hello")
    TurnRequest.objects.filter(pk=first.id).update(created_at=timezone.now() - timedelta(hours=1))
    retry = idempotency.claim(user=user, key="k-1", session_id=session.pk, content="hello")
    assert retry.id == first.id and retry.attempt != first.attempt  # taken over

    with pytest.raises(
        idempotency.RequestInProgress, match="answer was not charged \\(tool steps it had finished stay"
    ):
        idempotency.complete(claimed=first, turn_id=1, response={})
