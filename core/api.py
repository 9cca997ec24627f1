"""Project-wide API plumbing: the strict JSON parser, default pagination, and error mapping."""

import json
import logging
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    DisallowedHost,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from core.errors import DomainError

logger = logging.getLogger(__name__)


class JSONNumber(Decimal):
    """A JSON number with a fraction or exponent, parsed exactly; `source` keeps its spelling."""

    source: str

    def __new__(cls, text: str):
        number = super().__new__(cls, text)
        number.source = text
        return number


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a valid JSON value")


def _reject_duplicate_keys(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


class StrictJSONParser(JSONParser):
    """JSON without NaN/Infinity or duplicate keys; fractional numbers become exact Decimals."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding) if stream is not None else ""
        except RequestDataTooBig:
            raise
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError(f"Request body is not valid {encoding}.") from exc
        if not text.strip():
            raise exceptions.ParseError("Request body is empty; send a JSON object.")
        try:
            return json.loads(
                text,
                parse_float=JSONNumber,
                parse_constant=_reject_constant,
                object_pairs_hook=_reject_duplicate_keys,
            )
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from exc


class StrictPageSizeMixin:
    """A malformed `page_size` is a 400 like any bad input; DRF would silently use the default.

    Larger than max_page_size is still cut to it (asking for "as many as you give" is not malformed).
    """

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or raw == "":  # `page_size=` means absent, as every optional parameter
            return self.page_size
        digits = raw.lstrip("0") if raw.isascii() and raw.isdigit() else ""
        if digits:  # a whole number above 0; a long one is cut like any other (int() refuses 4300+ digits)
            return self.max_page_size if len(digits) > 9 else min(int(digits), self.max_page_size)
        raise exceptions.ValidationError(
            {self.page_size_query_param: [f"A page size is a whole number from 1 to {self.max_page_size}."]}
        )

    # Query parameters documented as positive integers (subclasses add theirs).
    integer_query_params = ("page_size_query_param",)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        names = {getattr(self, attr) for attr in self.integer_query_params}
        for parameter in parameters:
            if parameter["name"] in names:
                parameter["schema"] = {"type": "integer", "minimum": 1}
        return parameters


class DefaultPagination(StrictPageSizeMixin, PageNumberPagination):
    """Page numbers; a malformed or out-of-range `page` or `page_size` is a 400 on that parameter."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    integer_query_params = ("page_query_param", "page_size_query_param")

    def paginate_queryset(self, queryset, request, view=None):
        # `page=` is page 1 (DRF reads it so): an empty optional parameter means absent, everywhere.
        try:
            return super().paginate_queryset(queryset, request, view)
        except exceptions.NotFound as exc:
            # DRF answers 404 "Invalid page." for `page=abc` as for `page=99`: both are a bad query.
            raise exceptions.ValidationError(
                {self.page_query_param: ["Invalid page; follow the `next`/`previous` links as given."]}
            ) from exc


def document_pagination_errors(result, generator, request, public):
    """drf-spectacular postprocessing hook: every paginated list documents the 400 for a bad page."""
    paging = {"page", "page_size", "cursor"}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            names = {p.get("name") for p in operation.get("parameters", []) if p.get("in") == "query"}
            if names & paging and "400" not in operation.get("responses", {}):
                operation["responses"]["400"] = {
                    "description": 'A malformed `page`, `page_size` or `cursor`: `{"<parameter>": ["message"]}`.'
                }
    return result


def _json(properties: dict, required: list[str]) -> dict:
    return {
        "application/json": {"schema": {"type": "object", "properties": properties, "required": required}}
    }


_STRING = {"type": "string"}
# What any operation may answer besides its own statuses (docs/api.md "Errors").
_COMMON_RESPONSES = {
    "413": {
        "description": "Request body over the limit (1 MB); `code` is `request_too_large`.",
        "content": _json({"detail": _STRING, "code": _STRING}, ["detail", "code"]),
    },
    "414": {
        "description": (
            "Only behind gunicorn (a deployment's choice; `make serve` runs uvicorn, which passes long "
            "request lines to the application): a request line over gunicorn's limit (4094 bytes by "
            "default) is answered by gunicorn itself, before the application, as a short HTML page."
        ),
        "content": {"text/html": {"schema": _STRING}},
    },
    "500": {
        "description": (
            "An unexpected error. `error_id` is also in the server's log line (with the traceback): "
            "quote it to an operator."
        ),
        "content": _json({"detail": _STRING, "error_id": _STRING}, ["detail", "error_id"]),
    },
    "503": {
        "description": (
            "The database connection was lost; the request's transaction rolled back "
            "(`code` `database_unavailable`, header `Retry-After`)."
        ),
        "content": _json({"detail": _STRING, "code": _STRING}, ["detail", "code"]),
    },
}


def document_common_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: what every operation may answer, said once.

    401 where the operation needs authentication, 413 where it takes a body, 414/500/503 everywhere;
    and every optional query parameter admits an empty value, which the server reads as absent
    (`?kind=` is no filter), so `allowEmptyValue` says so.
    """
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            security = operation.get("security")
            needs_auth = bool(security) and {} not in security  # `{}`: anonymous calls are served
            if needs_auth and "401" not in responses:
                responses["401"] = {
                    "description": "Not authenticated: send `Authorization: Token <key>`.",
                    "content": _json({"detail": _STRING}, ["detail"]),
                }
            for status_code, response in _COMMON_RESPONSES.items():
                if status_code == "413" and "requestBody" not in operation:
                    continue
                responses.setdefault(status_code, response)
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and not parameter.get("required"):
                    parameter["allowEmptyValue"] = True
    return result


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "request_too_large"


class DatabaseUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = (
        "The database connection was lost while handling this request. Check your balance or ledger "
        "before you retry a paid request."
    )
    default_code = "database_unavailable"


def refused_request(exc: SuspiciousOperation | BadRequest) -> tuple[int, str, str]:
    """(status, code, detail) for a request Django refused as malformed, in words the client can act on:
    a 400, or the 413 of a body over the limit.

    Django's own words are for the log only: a DisallowedHost's name the host and hint at
    ALLOWED_HOSTS, which is the operator's business, not a stranger's.
    """
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return 413, RequestTooLarge.default_code, f"Request body too large; the limit is {limit} bytes."
    if isinstance(exc, TooManyFieldsSent):
        code = "too_many_fields"
        detail = (
            f"Too many query parameters or form fields: at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} "
            "are read. Send fewer; a list of values belongs in a JSON body."
        )
    elif isinstance(exc, TooManyFilesSent):
        code = "too_many_files"
        detail = (
            f"Too many files in one request: at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES}. "
            "Upload one file per request."
        )
    elif isinstance(exc, DisallowedHost):
        code = "disallowed_host"
        detail = (
            "This server does not answer for the host named in the request's Host header; "
            "send the request to the server's own address."
        )
    else:
        code = "bad_request"
        detail = "The request was refused as malformed; check its headers, query string and body."
    return 400, code, detail


def log_refused_request(request, exc: SuspiciousOperation | BadRequest) -> None:
    """Django's own log line for a refused request (its `django.security.<Error>` logger for a
    SuspiciousOperation), which Django writes only for the requests it answers itself."""
    name = "django.request"
    if isinstance(exc, SuspiciousOperation):
        name = f"django.security.{type(exc).__name__}"
    request = getattr(request, "_request", request)  # Django's request under DRF's
    logging.getLogger(name).error(
        str(exc), extra={"status_code": refused_request(exc)[0], "request": request}
    )


def exception_handler(exc, context):
    """The one way from an error to HTTP: domain errors (core.errors), lost connections, oversized bodies,
    requests Django refuses as malformed (SuspiciousOperation: 400), then DRF's own."""
    if isinstance(exc, OperationalError | InterfaceError):
        # A connection lost mid-request (a restart, a failover, pg_terminate_backend): the transaction
        # rolled back, so say so in JSON as /health does, instead of Django's HTML 500 page.
        request = context.get("request")
        logger.error(
            "database unavailable during a request",
            extra={"error": type(exc).__name__, "path": request.path if request else None},
        )
        exc = DatabaseUnavailable()
        response = Response({"detail": exc.detail, "code": exc.default_code}, status=exc.status_code)
        response["Retry-After"] = "1"
        return response
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = RequestTooLarge(f"Request body too large; the limit is {limit} bytes.")
    # Imported here: rest_framework.views reads the API settings, which name this module.
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

    if isinstance(exc, DomainError):
        set_rollback()  # as DRF does for its own errors: under ATOMIC_REQUESTS nothing is written
        return Response(exc.body(), status=exc.status_code)
    if isinstance(exc, SuspiciousOperation | BadRequest):
        # Django answers these itself only outside DRF; inside, DRF re-raised them (in DEBUG it failed
        # to, a 500, when the query string broke content negotiation before a renderer was chosen).
        log_refused_request(context.get("request"), exc)
        set_rollback()
        status_code, code, detail = refused_request(exc)
        return Response({"detail": detail, "code": code}, status=status_code)

    return drf_exception_handler(exc, context)
