"""Hostile input: schemathesis fuzzes every operation of our own OpenAPI schema, as staff and as a user.

Runs in-process against Django's WSGI app and the test database. Examples per operation come from
RELIABILITY_EXAMPLES (CI default below; `make reliability` runs the full size); generation is
deterministic so a CI failure reproduces by hand.
"""

import json
import os

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.config import SchemathesisConfig

from billing.models import CreditHold, CreditTransaction, LLMCallEvent
from billing.reconcile import check_ledger
from config.wsgi import application
from tests.factories import ChatSessionFactory, StaffUserFactory, UserFactory, api_token

# 100 per operation and per role keeps CI near a minute; `make reliability` runs 1000 (docs/reliability.md).
EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES", "100"))


# The reports and the user's ledger take `name=` (empty) as "no filter" (API.md pins it for `bucket`;
# django-filter does the same for `kind`); the schema does not say so, and the fuzzer would count an
# accepted empty value as a schema violation.
EMPTY_MEANS_ABSENT = (
    "/api/v1/admin/usage/summary/",
    "/api/v1/admin/transactions/export.csv/",
    "/api/v1/users/me/transactions/",
)


def _our_schema() -> dict:
    """The schema as GET /api/v1/schema/ serves it, with the reports' empty-is-absent rule spelled out."""
    generated = SchemaGenerator().get_schema(request=None, public=True)
    served = json.loads(OpenApiJsonRenderer().render(generated, renderer_context={}))
    for path in EMPTY_MEANS_ABSENT:
        for parameter in served["paths"][path]["get"]["parameters"]:
            if parameter["in"] == "query":
                parameter["schema"] = {"anyOf": [parameter["schema"], {"type": "string", "maxLength": 0}]}
    return served


CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True},
        # Examples and fuzzing only: the coverage phase and stateful links add thousands of calls per
        # operation whatever max-examples says, which would blow the CI budget.
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_dict(_our_schema(), config=CONFIG)
schema.app = application

# Not a server error; responses (status, content type, headers, body) conform to the schema;
# negative data is rejected with a 4xx.
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]


@pytest.fixture
def keep_the_test_connection():
    """Keep the test transaction's connection across requests, as Django's test client does.

    Schemathesis calls the WSGI app directly, so request_finished would run close_old_connections,
    which closes a connection inside a transaction (the test's) and breaks every later query.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(db, settings, keep_the_test_connection):
    """A staff user, a user with a funded wallet and a session, and another user's session."""
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    staff = StaffUserFactory()
    user = UserFactory()
    other = UserFactory()
    from billing import services

    services.grant(user=user, amount="100", reason="fuzzing budget", initiated_by=staff)
    return {
        "staff": staff,
        "user": user,
        "other": other,
        "session": ChatSessionFactory(owner=user),
        "other_session": ChatSessionFactory(owner=other),
        "tokens": {
            "staff": api_token(staff),
            "user": api_token(user),
        },
    }


def _aim(case, world) -> None:
    """Point some generated ids at real rows, so the fuzzer reaches handlers past the 404.

    Deterministic: an even generated id becomes a real one; an odd id stays as generated.
    """
    params = case.path_parameters or {}
    if isinstance(params.get("user_id"), int) and params["user_id"] % 2 == 0:
        params["user_id"] = world["user"].pk
    for name in ("id", "session_pk"):
        if isinstance(params.get(name), int) and params[name] % 2 == 0:
            session = world["session"]
            if not type(session).objects.filter(pk=session.pk).exists():  # deleted by an earlier example
                world["session"] = ChatSessionFactory(owner=world["user"])
            params[name] = world["session"].pk
            if params[name] % 4 == 0:
                params[name] = world["other_session"].pk


def _call(case, world, role: str) -> None:
    _aim(case, world)
    case.call_and_validate(headers={"Authorization": f"Token {world['tokens'][role]}"}, checks=CHECKS)


def _ledger_is_whole() -> None:
    result = check_ledger()
    assert result.ok, result.discrepancies
    # Every debit has its event, and no hold is left open by a finished request.
    assert not CreditTransaction.objects.filter(kind="debit", llm_call__isnull=True).exists()
    assert not CreditHold.objects.filter(status=CreditHold.Status.HELD).exists()
    assert not LLMCallEvent.objects.filter(status="ok", transactions__isnull=True, cost__gt=0).exists()


SETTINGS = hypothesis_settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@SETTINGS
def test_every_operation_as_staff(case, world):
    _call(case, world, "staff")
    _ledger_is_whole()


@schema.parametrize()
@SETTINGS
def test_every_operation_as_a_user(case, world):
    _call(case, world, "user")
    _ledger_is_whole()
