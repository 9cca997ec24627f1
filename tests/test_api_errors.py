"""No HTML under /api/: an unhandled error is a JSON 500 whose error id is in the log line too."""

import json
import logging

import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import include, path
from rest_framework.views import APIView

pytestmark = pytest.mark.django_db


class Exploding(APIView):
    authentication_classes = []
    permission_classes = []

    def get(self, request):
        raise RuntimeError("boom: a bug in a view")


def exploding_plain_view(request):
    raise KeyError("boom: a bug in a plain Django view")


def fine_page(request):
    return HttpResponse("ok")


# A URL map with the project's routes plus views that raise, under /api/ and outside it.
urlpatterns = [
    path("api/v1/test-explodes/", Exploding.as_view()),
    path("api/v1/test-explodes-plain/", exploding_plain_view),
    path("outside/explodes/", exploding_plain_view),
    path("", include("config.urls")),
]
handler404 = "core.views.not_found"
handler500 = "core.views.server_error"


@pytest.fixture
def client_no_raise(settings):
    settings.ROOT_URLCONF = __name__
    return Client(raise_request_exception=False)


@pytest.mark.parametrize("url", ["/api/v1/test-explodes/", "/api/v1/test-explodes-plain/"])
def test_an_unhandled_error_under_api_is_a_json_500_with_a_logged_error_id(client_no_raise, caplog, url):
    with caplog.at_level(logging.ERROR):
        response = client_no_raise.get(url)

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"detail", "error_id"}
    assert "boom" not in response.content.decode()  # internals stay in the log
    logged = [r for r in caplog.records if getattr(r, "error_id", None) == body["error_id"]]
    assert len(logged) == 1
    assert logged[0].path == url and logged[0].exc_info is not None


def test_the_json_500_is_answered_in_debug_too(client_no_raise, settings):
    settings.DEBUG = True

    response = client_no_raise.get("/api/v1/test-explodes/")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"


def test_handler500_answers_json_for_errors_outside_views(client_no_raise, monkeypatch, caplog):
    # An error raised by a middleware never reaches process_exception: handler500 answers it.
    from core import middleware

    def broken(self, request):
        raise RuntimeError("boom: a bug in a middleware")

    monkeypatch.setattr(middleware.RequestBodyLimitMiddleware, "__call__", broken)
    with caplog.at_level(logging.ERROR):
        response = client_no_raise.get("/api/v1/health")

    assert response.status_code == 500
    body = json.loads(response.content)
    assert any(getattr(r, "error_id", None) == body["error_id"] for r in caplog.records)


def test_outside_the_api_django_s_500_page_stays(client_no_raise):
    response = client_no_raise.get("/outside/explodes/")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


def test_a_patch_on_a_session_deleted_meanwhile_is_the_404_json(user_client, user, monkeypatch):
    # Found by schemathesis with two workers: the DELETE committed between the PATCH's read and its
    # save, and Django's "Save with update_fields did not affect any rows" became an HTML 500.
    from sessions_app.models import ChatSession
    from sessions_app.views import ChatSessionViewSet
    from tests.factories import ChatSessionFactory

    session = ChatSessionFactory(owner=user)
    read = ChatSessionViewSet.get_object

    def read_then_deleted_by_another_request(view):
        found = read(view)
        ChatSession.objects.filter(pk=found.pk).delete()
        return found

    monkeypatch.setattr(ChatSessionViewSet, "get_object", read_then_deleted_by_another_request)
    response = user_client.patch(f"/api/v1/sessions/{session.pk}/", {"title": "x"}, format="json")

    assert response.status_code == 404
    assert response.json() == {"detail": "No ChatSession matches the given query."}
