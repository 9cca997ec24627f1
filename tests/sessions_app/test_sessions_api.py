"""Chat sessions over HTTP: create, list, read, rename, delete, scoped to their owner."""

import pytest
from django.test import override_settings

from billing.models import CreditTransaction, LLMCallEvent
from sessions_app.models import ChatSession, Message, Turn
from sessions_app.services import take_turn
from tests.factories import ChatSessionFactory, ModelPriceFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/v1/sessions/", "/api/v1/sessions"])
def test_create_session_defaults_to_the_default_model(user_client, user, path):
    response = user_client.post(path, {"title": "Trip plans"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "title", "model", "turn_count", "summary", "created_at", "updated_at"}
    assert (body["title"], body["model"], body["turn_count"], body["summary"]) == (
        "Trip plans",
        "echo-1",
        0,
        None,
    )
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")
    assert ChatSession.objects.get(pk=body["id"]).owner == user


def test_create_session_with_an_empty_body_object(user_client):
    response = user_client.post("/api/v1/sessions/", {}, format="json")

    assert response.status_code == 201
    assert (response.json()["title"], response.json()["model"]) == ("", "echo-1")


@override_settings(LLM_DEFAULT_MODEL="house-model")
def test_create_session_uses_llm_default_model_setting(user_client):
    ModelPriceFactory(model="house-model")

    assert user_client.post("/api/v1/sessions/", {}, format="json").json()["model"] == "house-model"


def test_create_session_accepts_another_priced_model(user_client):
    ModelPriceFactory(model="gpt-test")

    assert (
        user_client.post("/api/v1/sessions/", {"model": "gpt-test"}, format="json").json()["model"]
        == "gpt-test"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "no-such-model"}, "model"),
        ({"model": "retired"}, "model"),
        ({"model": 7}, "model"),
        ({"title": 7}, "title"),
        ({"title": ["a"]}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "nul\x00"}, "title"),
    ],
)
def test_create_session_rejects_bad_input_and_writes_nothing(user_client, body, field):
    ModelPriceFactory(model="retired", active=False)

    response = user_client.post("/api/v1/sessions/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not ChatSession.objects.exists()


def test_unpriced_model_error_names_the_usable_models(user_client):
    response = user_client.post("/api/v1/sessions/", {"model": "nope"}, format="json")

    [message] = response.json()["model"]
    assert "'nope' has no active price" in message
    assert "echo-1" in message


@pytest.mark.parametrize("raw", ["[]", '"text"', '{"title": NaN}', '{"title": Infinity}', "{"])
def test_create_session_rejects_non_object_or_invalid_json(user_client, raw):
    response = user_client.generic("POST", "/api/v1/sessions/", raw, content_type="application/json")

    assert response.status_code == 400
    assert not ChatSession.objects.exists()


def test_list_shows_only_own_sessions_most_recent_first(user_client, user):
    older = ChatSessionFactory(owner=user)
    newer = ChatSessionFactory(owner=user)
    ChatSessionFactory()  # someone else's

    response = user_client.get("/api/v1/sessions")

    assert response.status_code == 200
    body = response.json()
    assert {"next", "previous", "results"} <= set(body)
    assert [s["id"] for s in body["results"]] == [newer.pk, older.pk]


def test_a_turn_moves_its_session_to_the_top(user_client, user):
    first = ChatSessionFactory(owner=user)
    ChatSessionFactory(owner=user)
    take_turn(session=first, user=user, content="bump")

    ids = [s["id"] for s in user_client.get("/api/v1/sessions/").json()["results"]]

    assert ids[0] == first.pk
    assert user_client.get(f"/api/v1/sessions/{first.pk}").json()["turn_count"] == 1


@pytest.mark.parametrize("suffix", ["/", ""])
def test_retrieve_own_session(user_client, user, suffix):
    session = ChatSessionFactory(owner=user, title="Mine")

    response = user_client.get(f"/api/v1/sessions/{session.pk}{suffix}")

    assert response.status_code == 200
    assert response.json()["title"] == "Mine"


def test_patch_renames_and_changes_model(user_client, user):
    ModelPriceFactory(model="other-model")
    session = ChatSessionFactory(owner=user, title="Old")

    response = user_client.patch(
        f"/api/v1/sessions/{session.pk}", {"title": "New", "model": "other-model"}, format="json"
    )

    assert response.status_code == 200
    assert (response.json()["title"], response.json()["model"]) == ("New", "other-model")
    session.refresh_from_db()
    assert (session.title, session.model) == ("New", "other-model")


def test_patch_refuses_an_unpriced_model(user_client, user):
    session = ChatSessionFactory(owner=user)

    response = user_client.patch(f"/api/v1/sessions/{session.pk}/", {"model": "nope"}, format="json")

    assert response.status_code == 400
    assert "model" in response.json()
    session.refresh_from_db()
    assert session.model == "echo-1"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": 7}, "title"),
        ({"title": None}, "title"),
        ({"model": False}, "model"),
        ({"title": "x" * 201}, "title"),
    ],
)
def test_patch_rejects_bad_input_and_changes_nothing(user_client, user, body, field):
    session = ChatSessionFactory(owner=user, title="Keep")

    response = user_client.patch(f"/api/v1/sessions/{session.pk}/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    session.refresh_from_db()
    assert (session.title, session.model) == ("Keep", "echo-1")


def test_patch_rejects_nan(user_client, user):
    session = ChatSessionFactory(owner=user, title="Keep")

    response = user_client.generic(
        "PATCH", f"/api/v1/sessions/{session.pk}/", '{"title": NaN}', content_type="application/json"
    )

    assert response.status_code == 400
    session.refresh_from_db()
    assert session.title == "Keep"


def test_put_is_not_offered(user_client, user):
    session = ChatSessionFactory(owner=user)

    assert (
        user_client.put(f"/api/v1/sessions/{session.pk}/", {"title": "x"}, format="json").status_code == 405
    )


def test_delete_keeps_the_ledger_and_call_events(user_client, user):
    session = ChatSessionFactory(owner=user)
    take_turn(session=session, user=user, content="hello")
    assert Turn.objects.count() == 1

    response = user_client.delete(f"/api/v1/sessions/{session.pk}/")

    assert response.status_code == 204
    assert not ChatSession.objects.exists()
    assert not Message.objects.exists()
    assert not Turn.objects.exists()
    assert LLMCallEvent.objects.filter(user=user).count() == 1
    assert CreditTransaction.objects.filter(wallet__user=user, kind="debit").count() == 1


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("get", ""), ("patch", ""), ("delete", ""), ("get", "/turns/"), ("post", "/turns/")],
)
def test_another_users_session_is_404(user_client, method, suffix):
    theirs = ChatSessionFactory(owner=UserFactory())

    response = getattr(user_client, method)(
        f"/api/v1/sessions/{theirs.pk}{suffix}", {"content": "hi", "title": "x"}, format="json"
    )

    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.title != "x"
    assert not Message.objects.exists()


def test_unknown_and_non_numeric_session_ids_are_404(user_client):
    assert user_client.get("/api/v1/sessions/999999/").status_code == 404
    assert user_client.get("/api/v1/sessions/abc/").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/sessions/"),
        ("post", "/api/v1/sessions/"),
        ("get", "/api/v1/sessions/1/"),
        ("patch", "/api/v1/sessions/1/"),
        ("delete", "/api/v1/sessions/1/"),
        ("get", "/api/v1/sessions/1/turns/"),
        ("post", "/api/v1/sessions/1/turns/"),
    ],
)
def test_anonymous_is_401(api_client, method, path):
    ChatSessionFactory(id=1)

    assert getattr(api_client, method)(path, {}, format="json").status_code == 401


def test_nul_in_a_query_parameter_is_400(user_client):
    assert user_client.get("/api/v1/sessions/?page=1%00").status_code == 400
