"""No HTML under /api/: an unhandled error is a JSON 500 whose error id is in the log line too."""

import json
import logging

import pytest
from django.core.exceptions import SuspiciousOperation, TooManyFieldsSent
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


def suspicious_plain_view(request):
    raise SuspiciousOperation("a plain Django view found the request suspicious (internal words)")


# A URL map with the project's routes plus views that raise, under /api/ and outside it.
urlpatterns = [
    path("api/v1/test-explodes/", Exploding.as_view()),
    path("api/v1/test-explodes-plain/", exploding_plain_view),
    path("api/v1/test-suspicious-plain/", suspicious_plain_view),
    path("outside/explodes/", exploding_plain_view),
    path("", include("config.urls")),
]
handler400 = "core.views.bad_request"
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


# --- requests Django refuses as malformed (SuspiciousOperation): a 400 in the API's shape ----------

TOO_MANY_PARAMS = "&".join(["a=1"] * 1001)  # DATA_UPLOAD_MAX_NUMBER_FIELDS is 1000


@pytest.fixture
def gateway_key(user):
    from tests.factories import token_client_for

    return token_client_for(user).post("/api/v1/users/me/keys", {"name": "k"}, format="json").json()["key"]


@pytest.mark.parametrize("debug", [False, True])
def test_over_a_thousand_query_parameters_under_api_are_a_json_400(token_client, settings, debug):
    # In DEBUG a 500 (DRF could not render the error: content negotiation itself failed on the query),
    # else Django's HTML "Bad Request (400)".
    settings.DEBUG = debug

    response = token_client.get(f"/api/v1/auth/me/?{TOO_MANY_PARAMS}")

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": "Too many query parameters or form fields: at most 1000 are read. Send fewer; a list of "
        "values belongs in a JSON body.",
        "code": "too_many_fields",
    }


@pytest.mark.parametrize("debug", [False, True])
def test_over_a_thousand_query_parameters_on_the_gateway_are_a_400_in_openais_shape(
    client, settings, gateway_key, debug
):
    settings.DEBUG = debug

    response = client.get(f"/v1/models?{TOO_MANY_PARAMS}", HTTP_AUTHORIZATION=f"Bearer {gateway_key}")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "too_many_fields")
    assert error["message"].startswith("Too many query parameters")


@pytest.mark.parametrize("debug", [False, True])
def test_a_multipart_upload_with_over_a_thousand_parts_is_a_json_400(user_client, settings, debug):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from sessions_app.models import UserFile

    settings.DEBUG = debug
    parts = {f"f{i}": "x" for i in range(1001)}

    response = user_client.post(
        "/api/v1/files/", {"file": SimpleUploadedFile("a.txt", b"hi", "text/plain"), **parts}
    )

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "too_many_fields"
    assert not UserFile.objects.exists()


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/api/v1/health/", "/v1/models"])
def test_an_unknown_host_under_the_api_is_a_400_that_does_not_echo_it(client, settings, debug, path):
    settings.DEBUG = debug
    settings.ALLOWED_HOSTS = ["api.example.com"]

    response = client.get(path, HTTP_HOST="evil.example")

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    code = body["error"]["code"] if path.startswith("/v1/") else body["code"]
    assert code == "disallowed_host"
    assert "evil" not in response.content.decode() and "ALLOWED_HOSTS" not in response.content.decode()


@pytest.mark.parametrize("debug", [False, True])
def test_a_suspicious_request_in_a_plain_view_under_api_is_a_json_400(client_no_raise, settings, debug):
    settings.DEBUG = debug

    response = client_no_raise.get("/api/v1/test-suspicious-plain/")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "The request was refused as malformed; check its headers, query string and body.",
        "code": "bad_request",
    }


def test_handler400_answers_json_for_a_request_refused_outside_views(monkeypatch):
    # Raised by a middleware (no view, no DRF): Django calls config.urls' handler400.
    from core import middleware

    def refuses(self, request):
        raise TooManyFieldsSent("The number of GET/POST parameters exceeded the limit.")

    monkeypatch.setattr(middleware.RequestBodyLimitMiddleware, "__call__", refuses)
    client = Client(raise_request_exception=False)

    api, gateway, page = client.get("/api/v1/health"), client.get("/v1/models"), client.get("/")

    assert (api.status_code, api.json()["code"]) == (400, "too_many_fields")
    assert (gateway.status_code, gateway.json()["error"]["code"]) == (400, "too_many_fields")
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")  # a page keeps Django's
