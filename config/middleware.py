"""Request guards that apply before any view runs."""

import re

from django.conf import settings
from django.http import JsonResponse

# The one path that takes a bigger body: a file upload (multipart), up to FILE_MAX_BYTES plus the
# multipart framing; the files view answers 413 itself for a file over FILE_MAX_BYTES.
UPLOAD_PATH = re.compile(r"^/api/v1/files/?$")
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def body_limit(request) -> int | None:
    """The largest request body accepted on this request's path, in bytes (None: no limit)."""
    if request.method == "POST" and UPLOAD_PATH.match(request.path_info):
        return settings.FILE_MAX_BYTES + MULTIPART_OVERHEAD_BYTES
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


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
            return JsonResponse(
                {
                    "detail": f"Request body too large: {length} bytes; the limit is {limit} bytes.",
                    "code": "request_too_large",
                },
                status=413,
            )
        return self.get_response(request)
