"""Database plumbing shared by the apps: prepared hot-path statements, and rows built from RETURNING."""

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache, lru_cache
from typing import TypeVar

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, ProgrammingError, connections, transaction
from django.db.models import Model
from django.utils.asyncio import async_unsafe

from core import statement_functions

M = TypeVar("M", bound=Model)

# Planning a multi-part CTE costs more than running it, so each app's few hot statements are
# prepared on the server once per connection (PgBouncer >= 1.21 keeps protocol-level prepared
# statements in transaction mode). Django's cursors bind client-side and never prepare; this
# threshold makes psycopg prepare on the first execution, for the statement run here only. Keep the
# number of different statements small: the connection's cache (psycopg's prepared_max, 100) is shared.
# DATABASE_SERVER_PREPARE=false (a pooler that hands each transaction to any server connection, such
# as PgBouncer 1.18 in transaction mode) must not prepare them: a statement prepared on one server
# connection would be missing, or another one, on the next. There each runs as a server function
# holding it instead (core.statement_functions), whose plan every server backend caches.
_PREPARE_NOW = 10**9

# A statement run on its own (autocommit) that moves no credits may commit without waiting for the
# WAL flush: synchronous_commit off for its one transaction. A crash then loses at most its last
# fraction of a second, which loses nothing a later statement relies on (a hold is lost with the turn
# that needed it; a throttle's count is in an UNLOGGED table anyway). Every statement that moves
# credits commits synchronously and flushes the earlier ones' WAL with its own. Inside a caller's
# transaction, which may move credits, the setting stays as it is. A select-list item (or a FROM
# item), with relaxed_commit_params() among the statement's parameters.
RELAXED_COMMIT = """set_config(
        'synchronous_commit',
        CASE WHEN %(on_its_own)s THEN 'off' ELSE current_setting('synchronous_commit') END,
        true
    )"""


def relaxed_commit_params() -> dict:
    """RELAXED_COMMIT's parameter: whether the statement run now is its own transaction."""
    return {"on_its_own": not connections[DEFAULT_DB_ALIAS].in_atomic_block}


# Characters that need no space on either side. Not `-`, `/` or `*`: folding those could join two
# of them into a comment (`- -1`, `/ *`).
_TIGHT = frozenset("(),=+<>|&")


@lru_cache(maxsize=256)
def compact_sql(sql: str) -> str:
    """The statement as sent: `--` comments dropped and whitespace folded, outside quoted literals.

    Hot statements are written for readers, one step and one comment a line; the server and its
    logs get them in one line. Cached: the folding runs once per statement.
    """
    out: list[str] = []
    quoted = ""  # the quote character we are inside of (' or "), or ""
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if quoted:
            out.append(char)
            quoted = "" if char == quoted else quoted
        elif char in "'\"":
            out.append(char)
            quoted = char
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        elif char.isspace():
            if out and out[-1] != " " and out[-1] not in _TIGHT:
                out.append(" ")
        elif char in _TIGHT and out and out[-1] == " ":
            out[-1] = char  # no space around punctuation and most operators

        else:
            out.append(char)
        i += 1
    return "".join(out).strip()


_NAMED = re.compile(r"%\((\w+)\)s")


@lru_cache(maxsize=256)
def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """`sql` (named `%(name)s` placeholders) as sent: compact, with PostgreSQL's own `$n`, and the names in order.

    psycopg parses a statement's `%(name)s` placeholders on every execution unless the text is under
    4,096 characters (its conversion cache's limit); the readable charge is longer. Converted here
    once, the statement runs on a RawCursor, which sends `$n` as it is.
    """
    names: list[str] = []

    def number(match: re.Match) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return _NAMED.sub(number, compact_sql(sql)).replace("%%", "%"), tuple(names)


@async_unsafe
def execute_prepared(sql: str, params: dict) -> list[tuple]:
    """Run one statement (prepared, or behind a pooler a server function's) in the current transaction; return its rows.

    Errors are Django's (IntegrityError, OperationalError, ...), and the query is logged like any
    other when query logging is on (tests counting queries see it). What connection.cursor() does
    first is done here too (health check, connect, thread check), without building its cursor.
    """
    db = connections[DEFAULT_DB_ALIAS]  # `connection` looks the wrapper up on every attribute read
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    raw = db.connection
    text, names = positional(sql)
    values = [params[name] for name in names]
    if not settings.DATABASE_SERVER_PREPARE:
        function = (
            statement_functions.function_for(db, text, values)
            if settings.DATABASE_STATEMENT_FUNCTIONS
            else None
        )
        if function is None:
            return _execute(db, raw, sql, params, text, values, prepare=False)
        try:
            rows = _execute(db, raw, sql, params, function.call, values, prepare=False)
        except ProgrammingError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UndefinedFunction):
                statement_functions.forget(db, text, values)  # dropped under us: made again next time
            raise
        return rows if function.returns_rows else []
    threshold, raw.prepare_threshold = raw.prepare_threshold, _PREPARE_NOW
    try:
        return _execute(db, raw, sql, params, text, values, prepare=True)
    finally:
        raw.prepare_threshold = threshold


def _execute(db, raw, sql: str, params: dict, text: str, values: list, *, prepare: bool) -> list[tuple]:
    """execute_prepared's statement on a RawCursor (prepared or not), logged like Django's own queries."""
    with psycopg.RawCursor(raw) as cursor, db.wrap_database_errors:
        if db.queries_logged:
            with db.cursor() as django_cursor, django_cursor.debug_sql(sql, params):
                cursor.execute(text, values, prepare=prepare)
        else:
            cursor.execute(text, values, prepare=prepare)
        # rownumber is None when the statement returned no rows to fetch (cheaper than description).
        return cursor.fetchall() if cursor.rownumber is not None else []


def loaded(model: type[M], /, **values) -> M:
    """An instance of a row the database just wrote and returned, as the ORM loads one (from_db).

    Every concrete field must be given, by attname (`wallet_id`, not `wallet`): a missing one would
    be deferred and cost a query when read.
    """
    names = attnames(model)
    try:
        row = [values[name] for name in names]
    except KeyError:
        missing = [name for name in names if name not in values]
        raise TypeError(f"{model.__name__} row is missing {', '.join(missing)}") from None
    return model.from_db(DEFAULT_DB_ALIAS, names, row)


def selected(model: type[Model], alias: str) -> str:
    """Every concrete column of `model` under the table alias `alias`, in field order: what loaded_row() reads."""
    return ", ".join(f"{alias}.{f.column}" for f in model._meta.concrete_fields)


def loaded_row(model: type[M], row: Sequence) -> M:
    """An instance from a row whose values are `selected(model, ...)`'s columns, in that order."""
    names = attnames(model)
    if len(row) != len(names):
        raise TypeError(f"{model.__name__} row has {len(row)} values, not {len(names)}")
    return model.from_db(DEFAULT_DB_ALIAS, names, list(row))


@cache
def attnames(model: type[Model]) -> list[str]:
    """The model's concrete fields by attname, in field order (read it, never change it)."""
    return [f.attname for f in model._meta.concrete_fields]


@contextmanager
def one_snapshot(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """The block's reads on `using` in one REPEATABLE READ, READ ONLY transaction: all see one snapshot.

    Under READ COMMITTED each statement takes a snapshot of its own, so two reads of a busy table
    can disagree. Inside a caller's transaction its snapshot rules (the isolation level can only be
    set first thing in a transaction).
    """
    db = connections[using]
    if db.in_atomic_block:
        yield
        return
    with transaction.atomic(using=using):
        with db.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield
