"""Hostile input: schemathesis fuzzes every operation of our own OpenAPI schema, as staff and as a user.

Runs in-process against Django's WSGI app and the test database. Examples per operation come from
RELIABILITY_EXAMPLES (CI default below; `make reliability` runs the full size); generation is
deterministic so a CI failure reproduces by hand.
"""

import itertools
import json
import os
from collections import Counter

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections, connection
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import CallOutcome
from schemathesis.generation import GenerationMode

from accounts.keys import create_api_key
from billing import services
from billing.models import CreditHold, CreditTransaction, LLMCallEvent
from billing.reconcile import check_ledger
from config.wsgi import application
from scripts.stripe_double import sign
from tests.factories import DEFAULT_PASSWORD, ChatSessionFactory, StaffUserFactory, UserFactory, api_token
from tests.stripe_fixtures import WEBHOOK_SECRET

# 100 per operation and per role keeps CI at a few minutes; `make reliability` runs 1000 (docs/reliability.md).
EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES", "100"))
# schemathesis warns when an operation serves fewer than this share of its schema-valid requests
# ("low valid rate"), or none at all ("mostly rejected generated data"): the schema then does not
# say what validation does. The same bar here, per operation and role.
MIN_VALID_RATE = 0.2
MIN_CALLS_FOR_VALID_RATE = 10


def _our_schema() -> dict:
    """The schema exactly as GET /api/v1/schema/ serves it: nothing is patched for the fuzzer."""
    generated = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(generated, renderer_context={}))


CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True},
        # Examples and fuzzing only: the coverage phase and stateful links add thousands of calls per
        # operation whatever max-examples says, which would blow the CI budget.
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_dict(_our_schema(), config=CONFIG)
# RELIABILITY_PATHS (a regex over paths) runs part of the schema, e.g. a new surface at the full size:
#   RELIABILITY_EXAMPLES=1000 RELIABILITY_PATHS='^/v1/|/keys' pytest tests/reliability/test_schemathesis.py
if os.environ.get("RELIABILITY_PATHS"):
    schema = schema.include(path_regex=os.environ["RELIABILITY_PATHS"])
schema.app = application

# The four checks of the issue (not a server error; every status documented; every body as documented;
# schema-invalid data refused with a 4xx), plus content types and documented headers.
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
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
def world(db, settings, keep_the_test_connection, stripe_double):
    """A staff user, a user with a funded wallet and a session, and another user's session; purchases go to the Stripe double."""
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    settings.THROTTLE_GATEWAY_RATE = None  # hundreds of calls a minute per key: validation is under test
    staff = StaffUserFactory()
    user = UserFactory()
    other = UserFactory()
    services.grant(user=user, amount="100", reason="fuzzing budget", initiated_by=staff)
    return {
        "staff": staff,
        "user": user,
        "other": other,
        "session": ChatSessionFactory(owner=user),
        "other_session": ChatSessionFactory(owner=other),
        "aimed": itertools.count(),
        "tokens": {
            "staff": api_token(staff),
            "user": api_token(user),
        },
        # The gateway (/v1/) takes the user's own API keys, not session tokens.
        "keys": {
            "staff": create_api_key(user=staff, name="fuzzing")[1],
            "user": create_api_key(user=user, name="fuzzing")[1],
        },
    }


def _is_positive(case) -> bool:
    return case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE


def _aim(case, world) -> None:
    """Point some generated data at real rows, so the fuzzer reaches handlers past the 404 or 400.

    Deterministic: an even generated id becomes a real one; an odd id stays as generated. In
    schema-valid bodies, some model names become a priced model and some token requests carry a
    real user's credentials (state no schema can describe). Negative cases keep their bodies.
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
    body = case.body
    if not _is_positive(case) or not isinstance(body, dict):
        return
    path, n = case.operation.path, next(world["aimed"])
    if path.startswith("/v1/chat/completions") and isinstance(body.get("model"), str) and n % 4 != 3:
        body["model"] = "echo-1"
        # tool_choice must name one of the tools offered (a rule across two fields no schema states).
        choice, tools = body.get("tool_choice"), body.get("tools")
        if isinstance(choice, dict) and isinstance(choice.get("function"), dict) and tools:
            choice["function"]["name"] = tools[0]["function"]["name"]
    if path.startswith("/api/v1/sessions/") and "turns" not in path and isinstance(body.get("model"), str):
        if n % 2 == 0:
            body["model"] = "echo-1"
    if path == "/api/v1/auth/token/" and n % 2 == 0:
        body.update(username=world["user"].username, password=DEFAULT_PASSWORD)
    # Hypothesis repeats its simplest values ("0", "f"): a name taken by an earlier example is a
    # conflict with the data, not with the schema, so make names new (still within the pattern).
    # Stripe signs its webhooks: a schema-valid body carries Stripe's signature of the bytes the WSGI
    # transport sends (werkzeug serializes a JSON body with json.dumps).
    if path == "/api/v1/payments/stripe/webhook/":
        case.headers = {**(case.headers or {}), "Stripe-Signature": sign(json.dumps(body), WEBHOOK_SECRET)}
    if path in ("/api/v1/auth/register/", "/api/v1/admin/pricing/"):
        name = "username" if "register" in path else "model"
        if isinstance(body.get(name), str) and body[name][:1].isalnum():
            body[name] = f"{n}{body[name]}"[: 100 if name == "model" else 150]


def _call(case, world, role: str, outcomes: Counter) -> None:
    _aim(case, world)
    if case.operation.path.startswith("/v1/"):
        headers = {"Authorization": f"Bearer {world['keys'][role]}"}
    else:
        headers = {"Authorization": f"Token {world['tokens'][role]}"}
    response = case.call(headers=headers)
    if _is_positive(case):
        outcome = case.operation.schema.classify_call_outcome(case, response)
        outcomes[outcome] += 1
        if outcome == CallOutcome.REJECTED:  # why, for the valid-rate verdict's message
            body = response.json() if "json" in response.headers.get("Content-Type", "") else {}
            error = body.get("error") if isinstance(body.get("error"), dict) else body
            outcomes[(response.status_code, error.get("code") if isinstance(error, dict) else None)] += 1
    case.validate_response(response, checks=CHECKS)


@pytest.fixture
def outcomes(request):
    """What the API did with the schema-valid requests of one operation and role; judged at the end."""
    counts: Counter = Counter()
    yield counts
    accepted, rejected = counts[CallOutcome.ACCEPTED], counts[CallOutcome.REJECTED]
    informative = accepted + rejected
    if informative >= MIN_CALLS_FOR_VALID_RATE:
        rate = accepted / informative
        assert rate >= MIN_VALID_RATE, (
            f"{request.node.name}: only {accepted} of {informative} schema-valid requests were served "
            f"({rate:.0%}); the schema's constraints do not say what validation does. Refused: "
            + ", ".join(f"{key[0]} {key[1]}: {n}" for key, n in counts.items() if isinstance(key, tuple))
        )


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


# The ledger is checked after every example that wrote to billing's tables, naming the example that
# broke it, and once more after each operation's last example. Whether one wrote is PostgreSQL's own
# count of the rows this transaction (the test's, which every request runs in) has inserted, updated
# or deleted there: most fuzzed requests are refused before they write, and check_ledger (about
# 25 ms on the test database) after each of those took most of the run while it could find nothing new.
def _billing_rows_written() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_xact_user_tables"
            " WHERE starts_with(relname, 'billing_')"
        )
        return cursor.fetchone()[0]


class LedgerWatch:
    """check_ledger after each example that wrote to billing's tables (reads included: none should write)."""

    def __init__(self):
        self.written = _billing_rows_written()

    def check_if_written(self) -> None:
        written = _billing_rows_written()
        if written != self.written:
            _ledger_is_whole()
            self.written = written


@pytest.fixture
def ledger(world):
    """The ledger is whole after each example that wrote, and after an operation's examples whatever they did."""
    watch = LedgerWatch()
    yield watch
    _ledger_is_whole()


@schema.parametrize()
@SETTINGS
def test_every_operation_as_staff(case, world, outcomes, ledger):
    _call(case, world, "staff", outcomes)
    ledger.check_if_written()


@schema.parametrize()
@SETTINGS
def test_every_operation_as_a_user(case, world, outcomes, ledger):
    _call(case, world, "user", outcomes)
    ledger.check_if_written()


def test_the_watch_counts_billing_writes_and_nothing_else(world):
    """The guard above: a write to billing's tables moves the count, a write elsewhere or a read does not."""
    before = _billing_rows_written()
    ChatSessionFactory(owner=world["user"])
    check_ledger()
    assert _billing_rows_written() == before
    services.grant(user=world["user"], amount="1", reason="watched", initiated_by=world["staff"])
    assert _billing_rows_written() > before
