"""Hot statements are written for readers and sent compact: psycopg then converts each one only once."""

import re

import pytest
from psycopg import _queries

from billing.services import charging, holds
from core.db import compact_sql
from sessions_app import selectors, turn_rows


def test_compact_sql_drops_comments_and_folds_whitespace_outside_literals():
    sql = """
        -- the step's comment
        SELECT a  +  1 AS b,   'keep -- this,  ( and this )' AS c, "Quoted  Name"
          FROM t   -- trailing comment
         WHERE x = - 1 AND y <> 2
    """
    assert (
        compact_sql(sql)
        == "SELECT a+1 AS b,'keep -- this,  ( and this )' AS c,\"Quoted  Name\" FROM t WHERE x=- 1 AND y<>2"
    )


@pytest.mark.parametrize(
    "statement",
    [
        holds._RESERVE_SQL,
        holds._PROGRESS_SQL,
        charging._RECORD_SQL,
        turn_rows.TURN_ROWS_SQL,
        selectors._SESSION_AND_HISTORY_SQL,
    ],
    ids=["reserve", "progress", "charge", "turn rows", "session read"],
)
def test_hot_statements_as_sent_fit_psycopgs_query_cache(statement):
    """Past 4096 characters (or 50 parameters) psycopg parses a statement's placeholders on every
    execution: 0.1-0.2 ms a charge. Shorten the statement (names, the rollup's figures) before this fails."""
    sent = compact_sql(statement)
    assert len(sent.encode()) <= _queries.MAX_CACHED_STATEMENT_LENGTH
    assert len(set(re.findall(r"%\((\w+)\)s", sent))) <= _queries.MAX_CACHED_STATEMENT_PARAMS
