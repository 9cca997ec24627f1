"""Hot statements as server functions, for a pooler that cannot keep prepared statements.

Behind PgBouncer < 1.21 in transaction mode (DATABASE_SERVER_PREPARE=false) a statement prepared on
one server connection is missing on the next, so the hot statements would go unprepared and the
server would parse and plan each of them on every run: about 3.4 ms more PostgreSQL CPU a turn than
prepared (docs/deployment.md). Instead each becomes a PL/pgSQL function that holds the statement,
made once (by the first process that needs it) and named by a digest of its text and types. Every
server connection has it, and each server backend caches its plan as it does any PL/pgSQL
statement, whichever client the pooler lends it to; the call is a one-line SELECT, cheap to plan.

The function takes the types psycopg sends for the statement's parameters (integers widened to
bigint; a NULL or a string left for the server to infer) and returns the statement's own columns:
the statement is prepared with those types and described once, on a connection of its own (never
inside the caller's transaction, which may roll back). One statement may so have a few functions,
one per set of parameter types it is called with (a NULL where there is usually a value). Where
that fails (a type the server cannot infer, no right to create functions), or with
DATABASE_STATEMENT_FUNCTIONS=false, the statement is sent unprepared as before; a failure says why
in a warning, once per statement and process.
"""

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer

logger = logging.getLogger(__name__)

PREFIX = "creditdesk_stmt_"
_made: dict[tuple, "Function | None"] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Function:
    """A statement's function: the SELECT that calls it, and whether the statement returns rows at all."""

    call: str
    returns_rows: bool


def function_for(db, text: str, values: list) -> Function | None:
    """The function holding `text` (a statement with `$n` parameters) on `db`'s database, for
    parameters of `values`' types, made if missing; None: send the statement as it is."""
    key = _key(db, text, values)
    if key not in _made:
        with _lock:
            if key not in _made:
                try:
                    _made[key] = _make(db, text, _sent_types(db, values))
                except psycopg.OperationalError as exc:  # the database unreachable: try again next time
                    logger.warning(
                        "hot statement sent unprepared: its server function could not be made yet",
                        extra={"error": str(exc).strip()[:300], "statement": text[:120]},
                    )
                    return None
    return _made[key]


def forget(db, text: str, values: list) -> None:
    """Make the function again on next use (it was dropped under this process)."""
    _made.pop(_key(db, text, values), None)


def _key(db, text: str, values: list) -> tuple:
    settings = db.settings_dict
    return (settings["HOST"], settings["PORT"], settings["NAME"], text, tuple(map(_shape, values)))


def _shape(value):
    """What decides the type psycopg sends for a value, cheaply (a key, read on every call)."""
    if isinstance(value, list):
        return list, type(value[0]) if value else None
    if isinstance(value, datetime):
        return datetime, value.tzinfo is not None
    return type(value)


# psycopg sends a Python int as the smallest integer type that holds it; the function takes bigint
# (an int2 or int4 argument is cast up on the call, as the statement itself would take it).
_WIDEST = {21: 20, 23: 20, 1005: 1016, 1007: 1016}  # int2, int4 -> int8; int2[], int4[] -> int8[]


def _sent_types(db, values: list) -> tuple[int, ...]:
    """The parameter types psycopg sends for these values (0: none, the server infers it; a NULL, a str)."""
    transformer = Transformer(db.connection)
    transformer.dump_sequence(values, [PyFormat.AUTO] * len(values))
    return tuple(_WIDEST.get(oid, oid) for oid in transformer.types)


def _make(db, text: str, sent_types: tuple[int, ...]) -> Function | None:
    try:
        with psycopg.connect(**db.get_connection_params(), autocommit=True) as conn, conn.transaction():
            params, columns = _described(conn, text, sent_types)
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT format_type(oid, NULL) FROM unnest(%s::oid[]) WITH ORDINALITY AS t (oid, n) ORDER BY n",
                    [params + columns],
                )
            ]
            param_types, column_types = names[: len(params)], names[len(params) :]
            digest = hashlib.sha256("\n".join([text, *param_types, "->", *column_types]).encode()).hexdigest()
            name = f"public.{PREFIX}{digest[:24]}"
            # One maker at a time per function; whoever comes second finds it made.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])
            if conn.execute("SELECT to_regproc(%s)", [name]).fetchone()[0] is None:
                conn.execute(_definition(name, text, param_types, column_types))
    except psycopg.OperationalError:
        raise
    except psycopg.Error as exc:  # for good (no right to create functions, a type it cannot take)
        logger.warning(
            "hot statement sent unprepared: its server function could not be made",
            extra={"error": str(exc).strip()[:300], "statement": text[:120]},
        )
        return None
    arguments = ", ".join(f"${n}" for n in range(1, len(params) + 1))
    if columns:
        return Function(call=f"SELECT * FROM {name}({arguments})", returns_rows=True)  # noqa: S608 - our name
    return Function(call=f"SELECT {name}({arguments})", returns_rows=False)


def _described(
    conn: psycopg.Connection, text: str, sent_types: tuple[int, ...]
) -> tuple[list[int], list[int]]:
    """The statement's parameter and column types (oids), from the server's own PREPARE of it with the
    types psycopg sends (unnamed, in this transaction): the function reads its parameters as the
    statement sent as it is would."""
    pgconn = conn.pgconn
    for result in (pgconn.prepare(b"", text.encode(), sent_types), pgconn.describe_prepared(b"")):
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise psycopg.ProgrammingError(
                result.get_error_field(pq.DiagnosticField.MESSAGE_PRIMARY).decode()
            )
    return [result.param_type(i) for i in range(result.nparams)], [
        result.ftype(i) for i in range(result.nfields)
    ]


def _definition(name: str, text: str, param_types: list[str], column_types: list[str]) -> str:
    if column_types:
        returns = "TABLE (" + ", ".join(f"c{n} {t}" for n, t in enumerate(column_types, 1)) + ")"
        body = f"RETURN QUERY {text};"
    else:
        returns, body = "void", f"{text};"
    # use_column: the statement's names are columns, never the result's c1, c2, ...
    return (
        f"CREATE FUNCTION {name}({', '.join(param_types)}) RETURNS {returns} LANGUAGE plpgsql VOLATILE AS "
        f"$creditdesk$\n#variable_conflict use_column\nBEGIN\n{body}\nEND\n$creditdesk$"
    )
