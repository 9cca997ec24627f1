"""The user's files over the API: upload rules (type, size, quota), listing, reading, deleting, isolation."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from sessions_app.models import UserFile
from tests.factories import UserFactory, client_for

pytestmark = pytest.mark.django_db
URL = "/api/v1/files/"


def upload(client, name="notes.txt", data=b"The quarterly budget is 42 credits.", content_type="text/plain"):
    return client.post(
        URL, {"file": SimpleUploadedFile(name, data, content_type=content_type)}, format="multipart"
    )


def test_upload_stores_the_file_and_answers_its_details(user_client, user):
    response = upload(user_client)

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "name", "content_type", "size", "created_at"}
    assert (body["name"], body["content_type"], body["size"]) == ("notes.txt", "text/plain", 35)
    row = UserFile.objects.get(pk=body["id"])
    assert row.owner == user
    assert default_storage.open(row.file.name).read() == b"The quarterly budget is 42 credits."
    assert str(user.pk) in row.file.name and "notes" not in row.file.name  # never a user-chosen path


@pytest.mark.parametrize("content_type", ["text/plain", "text/markdown", "text/csv", "application/json"])
def test_text_types_are_taken(user_client, content_type):
    assert upload(user_client, name="x", content_type=content_type).status_code == 201


@pytest.mark.parametrize(
    "name, data, content_type",
    [
        ("a.png", b"\x89PNG....", "image/png"),
        ("a.pdf", b"%PDF-1.4", "application/pdf"),
        ("a.bin", b"abc", "application/octet-stream"),
    ],
)
def test_other_types_are_415_and_nothing_is_kept(user_client, name, data, content_type, media_root):
    response = upload(user_client, name=name, data=data, content_type=content_type)

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_file_type"
    assert not UserFile.objects.exists()


@pytest.mark.parametrize("content_type", ["text/" + "x" * 200, "text/", "text/plain x"])
def test_a_text_type_no_row_can_keep_is_415_not_a_500(user_client, content_type, media_root):
    """A declared text/ type past the 100 characters the file's row keeps was a 500 after its bytes
    were stored; "text/" alone was kept as is."""
    response = upload(user_client, name="a.txt", content_type=content_type)

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_file_type"
    assert "send it as text/plain" in response.json()["detail"]
    assert not UserFile.objects.exists()


def test_an_octet_stream_named_like_text_is_taken_by_its_name(user_client):
    response = upload(user_client, name="readme.md", content_type="application/octet-stream")
    assert response.status_code == 201
    assert response.json()["content_type"] == "text/markdown"


def test_a_file_over_file_max_bytes_is_413(user_client, settings):
    settings.FILE_MAX_BYTES = 100
    response = upload(user_client, data=b"x" * 101)
    assert response.status_code == 413
    assert response.json()["code"] == "file_too_large"
    assert not UserFile.objects.exists()


def test_uploads_up_to_file_max_bytes_pass_the_1mb_body_limit(user_client, settings):
    settings.FILE_MAX_BYTES = 2 * 1024 * 1024
    response = upload(user_client, data=b"a" * (2 * 1024 * 1024))
    assert response.status_code == 201, response.content
    # Other paths keep the 1 MB limit.
    big = user_client.post("/api/v1/sessions/", {"title": "x" * (1024 * 1024 + 1)}, format="json")
    assert big.status_code == 413


def test_a_file_past_the_quota_is_413_quota_exceeded(user_client, settings):
    settings.FILE_QUOTA_BYTES = 100
    assert upload(user_client, data=b"a" * 60).status_code == 201
    response = upload(user_client, data=b"b" * 41)

    assert response.status_code == 413
    assert response.json()["code"] == "quota_exceeded"
    assert UserFile.objects.count() == 1
    assert upload(user_client, data=b"c" * 40).status_code == 201  # exactly at the quota


@pytest.mark.django_db(transaction=True)
def test_racing_uploads_never_pass_the_quota_together(settings):
    settings.FILE_QUOTA_BYTES = 100
    user = UserFactory()

    def one(_):
        try:
            return upload(client_for(user), data=b"z" * 30).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(one, range(8)))

    assert sorted(statuses) == [201] * 3 + [413] * 5
    assert sum(UserFile.objects.filter(owner=user).values_list("size", flat=True)) == 90
    # The refused uploads' bytes were removed again: only the kept files are stored.
    stored = default_storage.listdir(f"user_files/{user.pk}")[1]
    assert len(stored) == 3


def test_missing_file_field_is_400(user_client):
    response = user_client.post(URL, {}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()


def test_list_is_own_files_newest_first_paginated(user_client, user):
    for n in range(3):
        upload(user_client, name=f"f{n}.txt")
    upload(client_for(UserFactory()), name="theirs.txt")

    response = user_client.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert {"next", "previous", "results"} <= set(body)
    assert [f["name"] for f in body["results"]] == ["f2.txt", "f1.txt", "f0.txt"]


def test_read_and_download_own_file(user_client):
    file_id = upload(user_client, data=b'{"a": 1}', name="data.json", content_type="application/json").json()[
        "id"
    ]

    detail = user_client.get(f"{URL}{file_id}/")
    content = user_client.get(f"{URL}{file_id}/content")

    assert detail.status_code == 200 and detail.json()["name"] == "data.json"
    assert content.status_code == 200
    assert b"".join(content.streaming_content) == b'{"a": 1}'
    assert content["Content-Type"].startswith("application/json")
    assert content["X-Content-Type-Options"] == "nosniff"


def test_delete_removes_the_row(user_client):
    file_id = upload(user_client).json()["id"]

    response = user_client.delete(f"{URL}{file_id}/")

    assert response.status_code == 204
    assert not UserFile.objects.filter(pk=file_id).exists()


@pytest.mark.django_db(transaction=True)
def test_delete_removes_the_stored_bytes_after_commit():
    user = UserFactory()
    client = client_for(user)
    file_id = upload(client).json()["id"]
    name = UserFile.objects.get(pk=file_id).file.name
    assert default_storage.exists(name)

    assert client.delete(f"{URL}{file_id}").status_code == 204

    assert not default_storage.exists(name)


@pytest.mark.parametrize("method, suffix", [("get", "/"), ("get", "/content"), ("delete", "/")])
def test_another_users_file_is_404_on_every_path(user_client, method, suffix):
    theirs = upload(client_for(UserFactory()), data=b"their secret plans").json()["id"]

    response = getattr(user_client, method)(f"{URL}{theirs}{suffix}")

    assert response.status_code == 404
    assert b"secret" not in response.content
    assert UserFile.objects.filter(pk=theirs).exists()


def test_anonymous_is_401(api_client):
    assert api_client.get(URL).status_code == 401
    assert upload(api_client).status_code == 401


def test_huge_ids_are_404_not_500(user_client):
    assert user_client.get(f"{URL}{2**63}/").status_code == 404


def test_the_declared_type_decides_and_odd_bytes_are_kept_as_sent(user_client, user):
    data = b"caf\xe9 with a \x00 NUL byte, and budget words"
    response = upload(user_client, name="odd.txt", data=data)

    assert response.status_code == 201
    row = UserFile.objects.get(pk=response.json()["id"])
    assert default_storage.open(row.file.name).read() == data
    assert UserFile.objects.filter(owner=user, search_vector="budget").exists()


def test_an_empty_text_file_is_taken(user_client):
    response = upload(user_client, data=b"")
    assert response.status_code == 201 and response.json()["size"] == 0
