"""What a query's plan reads, from EXPLAIN ANALYZE: for tests that a read touches only the rows it should."""

import json

from django.db import connection

from core import db
from tests.database import indexes_of


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def assert_reads_at_most(table: str, sql: str, rows: int) -> None:
    """No step of `sql`'s plan reads more than `rows` rows of `table` (its scans and its indexes' scans,
    each counting the rows it returned and those it read and filtered out); the plan in the message if one does.

    The plans of the statements run by the database functions `sql` calls count too (a charge's
    limits are counted by one, billing migration 0028). Planned with the table's statistics (ANALYZE
    it first) but with sequential scans off: a test's tables are tiny, and the question is what the
    indexes let the query read, as on a large table.
    """
    indexes = indexes_of(table)
    plans = _plans_run(sql)
    reads = [
        # What the step returned and what it read to throw away, on each of its loops.
        (
            node["Actual Rows"]
            + node.get("Rows Removed by Filter", 0)
            + node.get("Rows Removed by Index Recheck", 0)
        )
        * node["Actual Loops"]
        for plan in plans
        for node in _nodes(plan["Plan"])
        if node.get("Relation Name") == table or node.get("Index Name") in indexes
    ]
    assert reads, json.dumps(plans, indent=1)
    assert max(reads) <= rows, (
        f"{max(reads)} rows of {table} read, not at most {rows}:\n{json.dumps(plans, indent=1)}"
    )


def _plans_run(sql: str) -> list[dict]:
    """`sql`'s plan as run (EXPLAIN ANALYZE), then those of the statements its functions ran, which
    auto_explain sends as notices (log_nested_statements), in the test's transaction."""
    nested = []

    def collect(diagnostic):
        _, _, plan = (diagnostic.message_primary or "").partition("plan:")
        if plan.strip().startswith("{"):
            nested.append(json.loads(plan))

    settings = {
        "auto_explain.log_min_duration": "0",
        "auto_explain.log_nested_statements": "on",
        "auto_explain.log_analyze": "on",
        "auto_explain.log_format": "json",
        "auto_explain.log_level": "notice",
        "enable_seqscan": "off",
    }
    with connection.cursor() as cursor:
        cursor.execute("LOAD 'auto_explain'")
        for name, value in settings.items():
            cursor.execute(f"SET LOCAL {name} = {value}")
        connection.connection.add_notice_handler(collect)
        try:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            (plan,) = cursor.fetchone()[0]
        finally:
            connection.connection.remove_notice_handler(collect)
            for name in settings:
                cursor.execute(f"RESET {name}")
    return [plan, *nested]


def execute_as_prepared(sql: str, params: dict) -> str:
    """`EXECUTE <name>(<values>)` for `sql` as core.db.execute_prepared prepared it on this connection
    (run it once first), for assert_reads_at_most: the plan the connection keeps, not a fresh one."""
    text, names = db.positional(sql)
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE statement = %s", [text])
        (name,) = cursor.fetchone()
    values = ", ".join(connection.ops.compose_sql("%s", [params[n]]) for n in names)
    return f"EXECUTE {name}({values})"


def plan_as_kept(monkeypatch, *modules, analyze: str) -> dict:
    """Make the statements run next planned as a pooled connection keeps them, and record them.

    ANALYZE the tables `analyze` names, then, in the test's transaction: one generic plan per
    statement, made at its first run from the statistics of that moment and kept (as after a pooled
    connection's first runs), with sequential scans off (as on a large table). Returns {sql: params}
    of what `modules` send through core.db.execute_prepared, for execute_as_prepared.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {analyze}")
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute("SET LOCAL enable_seqscan = off")
    sent = {}

    def execute(sql, params):
        sent[sql] = params
        return db.execute_prepared(sql, params)

    for module in modules:
        monkeypatch.setattr(module, "execute_prepared", execute)
    return sent
