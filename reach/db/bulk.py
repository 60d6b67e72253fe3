"""Batch inserts and updates that send a batch to PostgreSQL as one JSON document.

An executemany of a thousand rows reaches psycopg from SQLAlchemy as multi-row
``VALUES`` statements with one placeholder per value ("insertmanyvalues"), or as a
thousand parameter dicts. psycopg caches the conversion of a statement's placeholders
only up to 50 parameters, so every such statement (12 columns × 1,000 rows) was parsed
again with a regular expression: 14 % of a journey tick in a profile, more than the
database spent on the rows. Here the batch travels as one parameter, a JSON array that
orjson writes in C, typed back into rows on the server by ``jsonb_to_recordset``: a short
statement whose conversion psycopg caches. (One array per column with ``unnest`` came
first; psycopg builds array parameters value by value in Python, and the JSON document
measured 15 % faster per 1,000-row insert.)

Other databases (SQLite) get the plain Core executemany, which is what they are fast at.

For the same reason ``among`` writes a batch's ``IN (...)`` list as one array parameter on
PostgreSQL (``= ANY(:ids)``): an IN list of a thousand ids is a thousand placeholders,
which SQLAlchemy expands, psycopg parses again and PostgreSQL plans again for every length.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Connection,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    column,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def among(conn: Connection, col: ColumnElement[Any], values: Iterable[Any]
          ) -> ColumnElement[bool]:
    """``col IN (values)``; on PostgreSQL ``col = ANY(:values)``, one array parameter."""
    values = list(values)
    if _is_pg(conn):
        # The bound array is cast to the column's type (``%(p)s::BIGINT[]``) by the dialect.
        return col == any_(bindparam(None, values, type_=postgresql.ARRAY(col.type)))
    return col.in_(values)


def _recordset(table: Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
               ) -> Any:
    """The rows as one JSON document, read back as a typed row set by
    ``jsonb_to_recordset``: orjson writes it in C, where psycopg's array dumper walks every
    value in Python."""
    # A naive time is UTC here, as everywhere in Reach (never the server's TimeZone).
    document = orjson.dumps([{c: row[c] for c in columns} for row in rows], default=str,
                            option=orjson.OPT_NAIVE_UTC)
    return (func.jsonb_to_recordset(cast(bindparam("rows", document.decode(), type_=Text),
                                         postgresql.JSONB))
            .table_valued(*(column(c, table.c[c].type) for c in columns))
            .render_derived(name="v", with_types=True))


def insert_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str] | None = None,
    returning: Column[Any] | Sequence[Column[Any]] | None = None,
) -> list[Any]:
    """Insert ``rows`` (every row with the same keys); with ``conflict``, rows whose values
    of those columns exist already are skipped; with ``returning``, that column of each
    inserted row is returned (in no particular order), or a tuple per row for a list of
    columns."""
    if not rows:
        return []
    columns = list(rows[0])
    if _is_pg(conn):
        rowset = _recordset(table, columns, rows)
        stmt: Any = postgresql.insert(table).from_select(
            columns, select(*(rowset.c[c] for c in columns)))
        params: Any = None
    else:
        stmt = sqlite.insert(table) if conn.dialect.name == "sqlite" else table.insert()
        params = list(rows)
    if conflict is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
    if returning is not None:
        several = not isinstance(returning, ColumnElement)
        stmt = stmt.returning(*returning) if several else stmt.returning(returning)  # type: ignore[misc]
        result = conn.execute(stmt, params) if params is not None else conn.execute(stmt)
        return [tuple(r) for r in result] if several else [r[0] for r in result]
    conn.execute(stmt, params) if params is not None else conn.execute(stmt)
    return []


def update_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: str = "id",
    where: Sequence[ColumnElement[bool]] = (),
    fixed: Mapping[str, Any] | None = None,
) -> None:
    """Set, for each row, its columns on the table row whose ``key`` column equals the
    row's ``key`` value; ``where`` adds conditions, ``fixed`` values the same for all."""
    if not rows:
        return
    columns = [c for c in rows[0] if c != key]
    if _is_pg(conn):
        rowset = _recordset(table, [key, *columns], rows)
        stmt = (update(table)
                .where(table.c[key] == rowset.c[key], *where)
                .values({**{c: rowset.c[c] for c in columns}, **(fixed or {})}))
        conn.execute(stmt)
        return
    stmt = (update(table)
            .where(table.c[key] == bindparam("_key"), *where)
            .values({**{c: bindparam(f"_v_{c}") for c in columns}, **(fixed or {})}))
    conn.execute(stmt, [{"_key": row[key], **{f"_v_{c}": row[c] for c in columns}}
                        for row in rows])
