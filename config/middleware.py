"""Request guards that apply before any view runs, and the API's answer to an unhandled error."""

import logging
import uuid

from django.conf import settings
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404, JsonResponse

logger = logging.getLogger(__name__)


class RequestBodyLimitMiddleware:
    """Refuse a declared request body over DATA_UPLOAD_MAX_MEMORY_SIZE with 413, before reading it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
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
    return JsonResponse({"detail": SERVER_ERROR_DETAIL, "error_id": error_id}, status=500)


class APIErrorMiddleware:
    """No HTML under /api/, ever: an exception a view did not handle answers JSON 500 with an error id.

    Errors raised outside views (in other middleware) reach `config.views.server_error` (handler500),
    which answers the same way; this middleware also covers DEBUG, where Django would show its page.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not request.path.startswith(API_PREFIX):
            return None
        # Http404, PermissionDenied and the like keep Django's handling (handler404 answers JSON).
        if isinstance(exception, Http404 | PermissionDenied | SuspiciousOperation | BadRequest):
            return None
        return api_server_error(request, (type(exception), exception, exception.__traceback__))
