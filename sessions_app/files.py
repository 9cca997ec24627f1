"""The user's files: upload (text only, size and quota checked, words indexed), delete, and the reads
the files API and the tools share. Bytes live in Django's default storage; rows in UserFile.
"""

import logging
import mimetypes
import re
from dataclasses import dataclass

from django.conf import settings
from django.contrib.postgres.search import SearchVector
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import QuerySet, Sum, Value
from django.utils import timezone

from core.errors import DomainError
from core.text import storable
from sessions_app.models import SEARCH_CONFIG, UserFile

logger = logging.getLogger(__name__)

# Words past this many characters of a file are not indexed (a tsvector holds at most 1 MB).
FILE_INDEX_CHARS = 256 * 1024
TEXT_TYPES_HINT = "text/* or application/json"
# A media type as RFC 6838 names one (type/subtype, its restricted characters), as long as UserFile keeps.
MEDIA_TYPE_MAX_CHARS = UserFile._meta.get_field("content_type").max_length
_MEDIA_TYPE = re.compile(
    rf"(?=.{{3,{MEDIA_TYPE_MAX_CHARS}}}$)[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*", re.ASCII
)
# The same, as the OpenAPI schema declares the upload's part (a few common text/* types, and JSON).
TEXT_TYPES_DECLARED = "text/plain, text/markdown, text/csv, text/html, application/json"


class FileRefused(DomainError):
    """An upload that is not stored; `code` names why: 413 for its size or the quota, 415 for its type."""

    status_code = 413
    code = "invalid_file"


class UnsupportedFileType(FileRefused):
    status_code = 415
    code = "unsupported_file_type"


class FileTooLarge(FileRefused):
    code = "file_too_large"


class QuotaExceeded(FileRefused):
    code = "quota_exceeded"


@dataclass(frozen=True)
class FileText:
    file: UserFile
    text: str  # the requested slice
    start: int
    total_chars: int


def text_content_type(uploaded: UploadedFile) -> str:
    """The upload's media type (declared, else guessed from its name) if it is a text type; else refuse."""
    declared = (uploaded.content_type or "").split(";", 1)[0].strip().lower()
    if declared in ("", "application/octet-stream"):
        declared = (mimetypes.guess_type(uploaded.name or "")[0] or declared).lower()
    if declared.startswith("text/") or declared == "application/json":
        if not _MEDIA_TYPE.fullmatch(declared):  # "text/" alone, or past what the file's row keeps
            raise UnsupportedFileType(
                f"The file's declared type is not a media type we can keep ({TEXT_TYPES_HINT}, type/subtype "
                f"in at most {MEDIA_TYPE_MAX_CHARS} characters): send it as text/plain."
            )
        return declared
    raise UnsupportedFileType(
        f"Only text files can be uploaded ({TEXT_TYPES_HINT}); this one is {declared or 'of no declared type'}."
    )


def files_for_user(*, user) -> QuerySet[UserFile]:
    """The user's own files, newest first; another user's are simply absent."""
    return UserFile.objects.filter(owner=user).defer("search_vector").order_by("-created_at", "-id")


def used_bytes(*, user) -> int:
    """What the user's files take from FILE_QUOTA_BYTES."""
    return UserFile.objects.filter(owner=user).aggregate(total=Sum("size"))["total"] or 0


def _refuse_over_quota(*, user, size: int) -> None:
    used, quota = used_bytes(user=user), settings.FILE_QUOTA_BYTES
    if used + size > quota:
        raise QuotaExceeded(
            f"This file ({size} bytes) would take your files past your quota: {used} of {quota} bytes are "
            "used. Delete some files and try again."
        )


def upload_file(*, owner, uploaded: UploadedFile) -> UserFile:
    """Store a text file for `owner` and index its words; FileRefused (nothing kept) if not text, too big or over quota."""
    content_type = text_content_type(uploaded)
    if uploaded.size > settings.FILE_MAX_BYTES:
        raise FileTooLarge(
            f"The file is {uploaded.size} bytes; the largest upload is {settings.FILE_MAX_BYTES} bytes."
        )
    data = b"".join(uploaded.chunks())
    _refuse_over_quota(user=owner, size=len(data))  # early, before storing anything
    # The declared type decides what is text; bytes that are not UTF-8 are indexed as replaced, and NUL
    # (which a PostgreSQL text value cannot hold) is left out of the index, never out of the file.
    text = data.decode("utf-8", errors="replace").replace("\x00", "")
    row = UserFile(
        owner=owner,
        name=(uploaded.name or "untitled")[:255],
        content_type=content_type,
        size=len(data),
        created_at=timezone.now(),
    )
    # The bytes first (the storage may be remote: no transaction or lock is held meanwhile), then the
    # row, under the owner's quota lock; a refusal or failure removes the stored bytes again.
    row.file.save(row.name, ContentFile(data), save=False)
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                # Serializes one owner's uploads, so two racing ones cannot both fit in the quota.
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended('userfile-quota:' || %s, 0))", [owner.pk]
                )
            _refuse_over_quota(user=owner, size=row.size)
            row.search_vector = SearchVector(Value(text[:FILE_INDEX_CHARS]), config=SEARCH_CONFIG)
            row.save(force_insert=True)
    except BaseException:
        default_storage.delete(row.file.name)
        raise
    row.search_vector = None  # the stored vector is not read back
    logger.info(
        "file uploaded",
        extra={"user_id": owner.pk, "file_id": row.pk, "size": row.size, "content_type": content_type},
    )
    return row


def delete_file(*, file: UserFile) -> None:
    """Remove a file's row, then its bytes once that has committed."""
    name = file.file.name
    with transaction.atomic():
        file.delete()
        transaction.on_commit(lambda: _delete_stored(name))


def _delete_stored(name: str) -> None:
    try:
        default_storage.delete(name)
    except Exception:  # the row is gone; stray bytes are only space, so log and go on
        logger.exception("stored file could not be deleted", extra={"storage_name": name})


def read_file_text(*, file: UserFile, start: int = 0, max_chars: int) -> FileText:
    """Characters [start, start + max_chars) of a file's text (undecodable bytes and NULs replaced)."""
    with default_storage.open(file.file.name, "rb") as stored:
        # A NUL goes into the tool's result, the model's prompt and the turn's rows: PostgreSQL refuses
        # it there (the turn failed after its first calls were charged).
        text = storable(stored.read().decode("utf-8", errors="replace"))
    start = max(0, min(start, len(text)))
    return FileText(file=file, text=text[start : start + max_chars], start=start, total_chars=len(text))
