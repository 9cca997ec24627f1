"""Project-level endpoints: the health check that load balancers and operators poll."""

import functools
import logging
import sys

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import bad_request as default_bad_request
from django.views.defaults import page_not_found
from django.views.defaults import server_error as default_server_error
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_fields import NulSafeMixin
from core.middleware import API_PREFIX, api_bad_request, api_server_error, is_api_path
from core.openai_errors import error_response, is_openai_path
from core.replica import replica_state

logger = logging.getLogger(__name__)


@functools.cache
def migrations_on_disk() -> frozenset[tuple[str, str]]:
    """Every migration the code ships, as (app, name); read from disk once per process.

    The files do not change under a running process, so /health never rebuilds the graph per poll.
    """
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return frozenset(loader.graph.nodes)


def _pending_migrations() -> int:
    """Migrations on disk not yet recorded as applied: one small query on django_migrations."""
    applied = set(MigrationRecorder.Migration.objects.values_list("app", "name"))
    return len(migrations_on_disk() - applied)


class HealthView(NulSafeMixin, APIView):
    """200 when the database answers a real query; 503 with "database": "error" when it does not."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Health check",
        description=(
            "No authentication. `database` is `ok` when a query succeeds; `pending_migrations` counts "
            "migrations not yet applied; `replica` (only with DATABASE_REPLICA_URL) is the read "
            "replica's state (down or lagging sends its reads to the primary). 503 with `database: error` "
            "when the database is unreachable."
        ),
        responses={
            (200, "application/json"): inline_serializer(
                "Health",
                fields={
                    "status": serializers.CharField(help_text='"ok"'),
                    "database": serializers.CharField(help_text='"ok"'),
                    "pending_migrations": serializers.IntegerField(required=False),
                    "replica": inline_serializer(
                        "HealthReplica",
                        fields={
                            "status": serializers.CharField(help_text='"ok", "lagging" or "down"'),
                            "lag_seconds": serializers.FloatField(allow_null=True),
                            "max_lag_seconds": serializers.FloatField(),
                            "reads": serializers.CharField(help_text='"replica" or "primary"'),
                        },
                        required=False,
                        help_text="only with DATABASE_REPLICA_URL",
                    ),
                },
            ),
            (503, "application/json"): inline_serializer(
                "HealthFailed",
                fields={
                    "status": serializers.CharField(help_text='"error"'),
                    "database": serializers.CharField(help_text='"error"'),
                    "detail": serializers.CharField(),
                },
            ),
        },
    )
    def get(self, request):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
            pending = _pending_migrations()
        except DatabaseError as exc:
            # The reason goes to the log only: a connection error can name hosts and users.
            logger.error("health check: database unreachable", extra={"error": type(exc).__name__})
            return Response(
                {
                    "status": "error",
                    "database": "error",
                    "detail": "The database did not answer; see the server log.",
                },
                status=503,
            )
        body = {"status": "ok", "database": "ok", "pending_migrations": pending}
        replica = _replica_health()
        if replica is not None:
            body["replica"] = replica
        return Response(body)


def _replica_health() -> dict | None:
    """The replica's state as last checked (core.replica); None (no `replica` key) without DATABASE_REPLICA_URL.

    A replica that is down or lags does not make the instance unhealthy: its reads go to the primary.
    """
    state = replica_state()
    if state is None:
        return None
    return {
        "status": state.state,
        "lag_seconds": None if state.lag_seconds is None else round(state.lag_seconds, 3),
        "max_lag_seconds": settings.DATABASE_REPLICA_MAX_LAG,
        "reads": "replica" if state.usable else "primary",
    }


def server_error(request):
    """handler500: an API path answers the JSON 500 with an error id (logged); the rest, Django's page."""
    if is_api_path(request.path):
        return api_server_error(request, sys.exc_info())
    return default_server_error(request)


def _api_not_found(request) -> JsonResponse | None:
    """The 404 of an unrouted API path, in its prefix's error shape; None outside /api/ and /v1/."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found."}, status=404)
    if is_openai_path(request.path):
        return error_response(f"Unknown path {request.path!r}.", status=404, code="not_found")
    return None


def bad_request(request, exception):
    """handler400: a request Django refused as malformed (a SuspiciousOperation raised outside any view:
    too many fields, a Host not in ALLOWED_HOSTS) answers JSON under /api/ and OpenAI's shape under
    /v1/, like every API error; the rest get Django's page. Django has logged it already."""
    if is_api_path(request.path):
        return api_bad_request(request, exception)
    return default_bad_request(request, exception)


def not_found(request, exception):
    """An unrouted path under /api/ answers JSON like every other API error; the rest get Django's page.

    Without it, `/api/v1/sessions/abc/` (no route matches a non-numeric id) answered an HTML page.
    """
    return _api_not_found(request) or page_not_found(request, exception)


@csrf_exempt  # it writes nothing; without it, an unrouted POST answered the CSRF failure page
def unrouted(request, *args, **kwargs):
    """The last route under /api/ and /v1/: the same JSON 404 as not_found, with DEBUG on too.

    Django uses handler404 only with DEBUG off; with it on (`make run`), an unrouted API path answered
    the HTML technical 404 page, which no API client can read.
    """
    return _api_not_found(request)
