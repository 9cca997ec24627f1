"""Regression tests for the defects the reliability campaign found (one test per defect)."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/sessions/abc/",
        "/api/v1/sessions/0.1/turns/",
        "/api/v1/admin/wallets/true/grant",
        "/api/v1/no-such-endpoint",
    ],
)
def test_an_unrouted_api_path_answers_json_404(user_client, path):
    # Found by schemathesis: a non-numeric id matched no route and Django answered an HTML page.
    response = user_client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_an_unrouted_path_outside_the_api_keeps_django_s_page(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
