"""Hot statements are written for readers and sent compact, with PostgreSQL's own `$n` placeholders."""

import pytest
from psycopg import _queries

from billing import services
from billing.services import charging, holds
from core.db import compact_sql, positional
from sessions_app import turn_rows
from tests.factories import ModelPriceFactory, UserFactory, fund


def test_compact_sql_drops_comments_and_folds_whitespace_outside_literals():
    sql = """
        -- the step's comment
        SELECT a  +  1 AS b,   'keep -- this,  ( and this )' AS c, "Quoted  Name"
          FROM t   -- trailing comment
         WHERE x = - 1 AND y <> 2
    """
    assert compact_sql(sql) == (
        "SELECT a+1 AS b,'keep -- this,  ( and this )' AS c,\"Quoted  Name\" FROM t WHERE x=- 1 AND y<>2"
    )


def test_positional_numbers_each_name_once_in_order_of_first_use():
    text, names = positional("SELECT %(b)s, %(a)s, %(b)s, 100 %% 7 -- %(c)s in a comment")
    assert (text, names) == ("SELECT $1,$2,$1,100 % 7", ("b", "a"))


@pytest.mark.parametrize(
    "statement",
    [
        holds._RESERVE_SQL,
        holds._PROGRESS_SQL,
        charging._RECORD_SQL,
        turn_rows.TURN_ROWS_SQL[False],
        turn_rows.TURN_ROWS_SQL[True],
        charging._record_sql(turn_rows._AFTER_CHARGE_CTES[False], turn_rows._TURN_ROWS_COLUMNS[False]),
        charging._record_sql(turn_rows._AFTER_CHARGE_CTES[True], turn_rows._TURN_ROWS_COLUMNS[True]),
    ],
    ids=[
        "reserve",
        "progress",
        "charge",
        "turn rows",
        "turn rows with tool runs",
        "charge with the turn rows",
        "charge with the turn rows and tool runs",
    ],
)
def test_hot_statements_convert_every_placeholder(statement):
    text, names = positional(statement)
    assert "%(" not in text and names
    assert f"${len(names)}" in text


def test_a_charge_never_has_psycopg_parse_its_placeholders(db, monkeypatch):
    """psycopg parses a named-placeholder statement over 4,096 characters on every run (0.1-0.2 ms a
    charge, the readable charge being longer); the prepared hot path sends `$n` and skips that."""
    parsed = []
    real = _queries._query2pg_nocache
    monkeypatch.setattr(_queries, "_query2pg_nocache", lambda *args: parsed.append(args) or real(*args))
    user = UserFactory()
    fund(user, "10")
    price = ModelPriceFactory()
    for _ in range(2):
        reservation = services.reserve(user=user, amount="1", model=price.model)
        services.charge(
            hold=reservation.hold, user=user, price=price, provider="echo", input_tokens=10, output_tokens=5
        )
    assert parsed == []
