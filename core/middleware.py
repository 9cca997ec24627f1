"""Request guards that apply before any view runs, and the API's answer to an unhandled error."""

import logging
import os
import re
import traceback
import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.exceptions import BadRequest, DisallowedHost, PermissionDenied, SuspiciousOperation
from django.db import DataError
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.defaultfilters import filesizeformat
from django.utils.html import escape

from core.api import log_refused_request, refused_request
from core.openai_errors import error_body, error_response, is_openai_path
from core.text import NUL, nul_query_params

logger = logging.getLogger(__name__)

# The paths that take a bigger body: a file upload (multipart) through the API or the files page, up
# to FILE_MAX_BYTES plus the multipart framing; each answers a file over FILE_MAX_BYTES itself.
UPLOAD_PATH = re.compile(r"^/(api/v1/)?files/?$")
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def body_limit(request) -> int | None:
    """The largest request body accepted on this request's path, in bytes (None: no limit)."""
    if request.method == "POST" and UPLOAD_PATH.match(request.path_info):
        return settings.FILE_MAX_BYTES + MULTIPART_OVERHEAD_BYTES
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def largest_body() -> int:
    """The largest request body any path takes (core.asgi reads no more of one)."""
    return max(settings.DATA_UPLOAD_MAX_MEMORY_SIZE, settings.FILE_MAX_BYTES + MULTIPART_OVERHEAD_BYTES)


class RequestBodyLimitMiddleware:
    """Refuse a declared request body over the path's limit with 413, before reading it.

    The limit is DATA_UPLOAD_MAX_MEMORY_SIZE (1 MB), except on the upload path (body_limit).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = body_limit(request)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            message = f"Request body too large: {length} bytes; the limit is {limit} bytes."
            if is_openai_path(request.path_info):
                return error_response(message, status=413, code="request_too_large")
            if not request.path_info.startswith(API_PREFIX):  # a page's form: a page, not JSON
                upload = UPLOAD_PATH.match(request.path_info)
                most = (
                    f"{filesizeformat(settings.FILE_MAX_BYTES)} for a file"
                    if upload
                    else filesizeformat(limit)
                )
                return HttpResponse(
                    f"<!doctype html><title>Too large</title><p>That is too large to send: at most {most}. "
                    f'<a href="{escape(request.path)}">Go back</a>.',
                    status=413,
                )
            return JsonResponse(
                {
                    "detail": f"Request body too large: {length} bytes; the limit is {limit} bytes.",
                    "code": "request_too_large",
                },
                status=413,
            )
        return self.get_response(request)


API_PREFIX = "/api/"
SERVER_ERROR_DETAIL = (
    "An unexpected error occurred; nothing more was done. Quote the error_id to an operator."
)


def api_server_error(request, exc_info) -> JsonResponse:
    """The JSON 500 of the API: a fresh error id, logged with the traceback and sent to the client."""
    error_id = uuid.uuid4().hex
    logger.error(
        "unhandled error in an API request",
        exc_info=exc_info,
        extra={"error_id": error_id, "method": request.method, "path": request.path},
    )
    if is_openai_path(request.path):
        body = error_body(SERVER_ERROR_DETAIL, status=500, code="internal_error", error_id=error_id)
        return JsonResponse(body, status=500)
    return JsonResponse({"detail": SERVER_ERROR_DETAIL, "error_id": error_id}, status=500)


def api_bad_request(request, exc: SuspiciousOperation | BadRequest) -> JsonResponse:
    """The API's answer to a request Django refused as malformed (core.api.refused_request's: a 400, a
    413 for a body over the limit): `{"detail", "code"}`, or OpenAI's shape under /v1/."""
    status, code, detail = refused_request(exc)
    if is_openai_path(request.path):
        return error_response(detail, status=status, code=code)
    return JsonResponse({"detail": detail, "code": code}, status=status)


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIX) or is_openai_path(path)


class APIErrorMiddleware:
    """No HTML under /api/, ever: an exception a view did not handle answers JSON 500 with an error id,
    and a request Django refuses as malformed (SuspiciousOperation) a JSON 400.

    Errors raised outside views (in other middleware) reach `core.views.server_error` (handler500)
    and `core.views.bad_request` (handler400), which answer the same way; this middleware also covers
    DEBUG, where Django would show its page (for a 400 too). A Host header not in ALLOWED_HOSTS is
    refused here, before CommonMiddleware reads the host and Django answers it with a page.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if is_api_path(request.path):
            try:
                request.get_host()
            except DisallowedHost as exc:
                log_refused_request(request, exc)
                return api_bad_request(request, exc)
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not is_api_path(request.path):
            return None
        if isinstance(exception, SuspiciousOperation | BadRequest):
            log_refused_request(request, exception)
            return api_bad_request(request, exception)
        # Http404, PermissionDenied and the like keep Django's handling (handler404 answers JSON).
        if isinstance(exception, Http404 | PermissionDenied):
            return None
        return api_server_error(request, (type(exception), exception, exception.__traceback__))


def is_admin_changelist(request, view_func) -> bool:
    """Whether the view is a list Django's ChangeList builds from the query string: a ModelAdmin's own
    changelist URL (its view carries `model_admin`). A page that only takes a changelist's place (the
    usage report) validates its own query, and is left to it."""
    match = request.resolver_match
    return (
        match is not None
        and "admin" in match.namespaces
        and (match.url_name or "").endswith("_changelist")
        and getattr(view_func, "model_admin", None) is not None
    )


# SQLSTATEs of a value its column cannot hold: not text of its type (an enum, an inet), a date or a
# number out of range or malformed, a character the encoding lacks.
_UNCOMPARABLE = {"22P02", "22007", "22008", "22003", "22021"}
_LOOKUPS = os.path.join("django", "db", "models", "lookups.py")


def _a_filter_value_refused(exception) -> bool:
    """A value its column cannot hold: refused by PostgreSQL (a DataError of those SQLSTATEs), or by the
    field as it prepared the lookup's value (a ValueError raised inside Django's lookups)."""
    if isinstance(exception, DataError):
        return getattr(exception.__cause__, "sqlstate", None) in _UNCOMPARABLE
    if isinstance(exception, ValueError):
        frames = traceback.extract_tb(exception.__traceback__)
        return any(frame.filename.endswith(_LOOKUPS) for frame in frames)
    return False


class AdminListQueryMiddleware:
    """No 500 from a changelist's filters, for every model admin at once (ours and the packages'):

    Django's list filters hand their values to the database unchecked. A NUL, which PostgreSQL
    refuses in any text, is taken out before the view runs: the list is shown without those
    parameters and says so. Search (`q`) is left to Django, whose form already says the same.
    A value the database cannot compare with its column (a word for an enum or an IP address, in
    the packages' admins) is caught as the page renders:
    the list unfiltered, and a message. Any other error stays a 500.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not is_admin_changelist(request, view_func):
            return None
        request.is_admin_changelist = True
        bad = [name for name in nul_query_params(request.GET) if name != SEARCH_VAR]
        if not bad:
            return None
        kept = request.GET.copy()
        for key in list(kept):
            if key != SEARCH_VAR and (NUL in key or key in bad):
                del kept[key]
        messages.error(
            request,
            f"Null characters are not allowed in a list's filters; left out: {', '.join(bad)}.",
        )
        return HttpResponseRedirect(f"{request.path}?{kept.urlencode()}" if kept else request.path)

    def process_exception(self, request, exception):
        # Only a filtered list being read: the same list without its query string cannot fail the same
        # way, and an action's own error (a POST) is not a filter's.
        if not (
            getattr(request, "is_admin_changelist", False)
            and request.method in ("GET", "HEAD")
            and request.GET
        ):
            return None
        if not _a_filter_value_refused(exception):
            return None  # any other failure is the page's own, a 500 like any other
        logger.warning(
            "admin list filter the database could not compare",
            exc_info=exception,
            extra={"path": request.path, "query": request.GET.urlencode()},
        )
        messages.error(
            request,
            "This list cannot be filtered that way (a filter value is not one its column can hold); "
            "it is shown unfiltered.",
        )
        return HttpResponseRedirect(request.path)
