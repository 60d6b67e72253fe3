"""Selecting an audience: suppression, keyset-paginated batches, counts and plans.

Whatever a segment says, :func:`eligible_clause` keeps erased contacts, contacts not
subscribed on the channel and contacts without an address on it out of every send.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Select, Text, and_, cast, func, select
from sqlalchemy.sql.elements import ColumnElement

from audiences.consent import status_column
from audiences.sqlfuncs import Explain
from reach.db.schema import SUBSCRIBED, contacts

_TIME_COLUMNS = ("created_at", "updated_at", "erased_at")
_TEXT_READ = ("attributes", *_TIME_COLUMNS)


def eligible_clause(channel: str) -> ColumnElement[bool]:
    """Not erased, ``subscribed`` on ``channel``, and an address (email / phone) on it."""
    address = contacts.c.email if channel == "email" else contacts.c.phone
    return and_(
        contacts.c.erased_at.is_(None),
        status_column(channel) == SUBSCRIBED,
        address.is_not(None),
        address != "",
    )


def _eligible(channel: str | None) -> ColumnElement[bool]:
    """Eligible on ``channel``; with None (exports, samples), every contact not erased."""
    return eligible_clause(channel) if channel else contacts.c.erased_at.is_(None)


def audience_query(
    where: ColumnElement[bool], channel: str | None, after_id: int = 0, limit: int | None = None,
    *, attributes_as_text: bool = False,
) -> Select[Any]:
    """Full contact rows matching ``where`` and eligible on ``channel`` (None: not erased,
    whatever the statuses), by id after
    ``after_id`` (keyset pagination: resume from the last id sent). With
    ``attributes_as_text`` the attributes column is the JSON text, for
    :func:`contacts_from_text` to decode a whole batch at once, and the timestamps are
    their ISO text, parsed by :class:`Contact` only when read (the driver's timestamptz
    loader was a third of the fetching time, and most sends never read them)."""
    columns: list[Any] = [contacts]
    if attributes_as_text:
        columns = [cast(c, Text).label(c.name) if c.name in _TEXT_READ else c
                   for c in contacts.c]
    stmt = (
        select(*columns)
        .where(where, _eligible(channel), contacts.c.id > after_id)
        .order_by(contacts.c.id)
    )
    return stmt.limit(limit) if limit is not None else stmt


class Contact(Mapping[str, Any]):
    """A contact as templates see it, read straight from its database row (no copy).

    Columns come first, custom attributes after them (a column wins); empty columns are
    left out rather than None, so a template sees a missing value as missing:
    ``| default(...)`` applies, and without it validation reports the gap instead of
    mailing the word "None". ``attributes`` is the attribute dict itself. Naive timestamps
    (SQLite keeps no offset) are read as UTC.

    Building a dict per contact cost more than fetching the row; this view costs one small
    object, which is what lets a send stream its audience at the database's pace.
    """

    __slots__ = ("_row", "_index", "_attrs")

    def __init__(self, row: Sequence[Any], index: dict[str, int], attrs: dict[str, Any]):
        self._row, self._index, self._attrs = row, index, attrs

    def __getitem__(self, key: str) -> Any:
        i = self._index.get(key)
        if i is not None:
            value = self._row[i]
            if value is not None:
                if key in _TIME_COLUMNS:
                    if isinstance(value, str):  # ISO text (PostgreSQL's or SQLite's)
                        value = datetime.fromisoformat(value)
                    if value.tzinfo is None:
                        return value.replace(tzinfo=UTC)
                return value
        if key == "attributes":
            return self._attrs
        return self._attrs[key]

    def __iter__(self) -> Iterator[str]:
        row, index = self._row, self._index
        present = [k for k, i in index.items() if row[i] is not None]
        yield from present
        yield from (k for k in self._attrs if k not in index or row[index[k]] is None)
        if "attributes" not in present:
            yield "attributes"

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Contact({dict(self)!r})"


def contacts_from(keys: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Contact]:
    """Views over fetched contact rows (``keys`` as the result's column names)."""
    index = {k: i for i, k in enumerate(keys)}
    at = index["attributes"]
    return [Contact(row, index, row[at] or {}) for row in rows]


def contacts_from_text(keys: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Contact]:
    """Views over rows whose ``attributes`` column is JSON text: the batch's attributes are
    decoded by one orjson call over one JSON array, not one driver callback per row (a
    per-row call cost more than the decoding itself)."""
    at = list(keys).index("attributes")
    index = {k: i for i, k in enumerate(keys) if i != at}
    decoded = orjson.loads("[" + ",".join([row[at] or "null" for row in rows]) + "]")
    return [Contact(row, index, attrs or {}) for row, attrs in zip(rows, decoded, strict=True)]


def contact_dict(row: Any) -> dict[str, Any]:
    """A contact row (mapping or (key, value) pairs) as a plain dict with the same content
    as :class:`Contact` (for callers that change it)."""
    data = dict(row)
    keys = list(data)
    return dict(Contact([data[k] for k in keys], {k: i for i, k in enumerate(keys)},
                        data.get("attributes") or {}))


def iter_audience(
    conn: Connection,
    where: ColumnElement[bool],
    channel: str | None,
    batch_size: int = 1000,
    after_id: int = 0,
) -> Iterator[list[Contact]]:
    """Batches of contacts (see :class:`Contact`), in id order, each one query."""
    while True:
        result = conn.execute(audience_query(where, channel, after_id, batch_size,
                                             attributes_as_text=True))
        keys = tuple(result.keys())
        # fetchall: one driver call per batch (row-by-row fetching cost a third of the time).
        batch = contacts_from_text(keys, result.fetchall())
        if not batch:
            return
        yield batch
        if len(batch) < batch_size:
            return
        after_id = batch[-1]["id"]


def stream_audience(
    engine: Engine,
    where: ColumnElement[bool],
    channel: str | None,
    batch_size: int = 5000,
) -> Iterator[list[Contact]]:
    """Every contact matching ``where`` (eligible on ``channel``; with None, every contact
    not erased) in keyset batches, in id order, each batch its own query.

    On PostgreSQL a thread fetches batch n+1 on a connection of its own while the caller
    decodes and uses batch n: the server's part of each query (about a third of a batch's
    time) then overlaps with the Python part instead of adding to it. Batches are separate
    statements either way (as with :func:`iter_audience`), so a contact changed during the
    stream is seen as it is when its batch is read. SQLite reads in the caller's thread.
    """
    if engine.dialect.name != "postgresql":
        with engine.connect() as conn:
            yield from iter_audience(conn, where, channel, batch_size)
        return
    fetched: queue.Queue[tuple[tuple[str, ...], list[Any]] | BaseException | None] = (
        queue.Queue(maxsize=2))
    stop = threading.Event()

    def fetch() -> None:
        try:
            with engine.connect() as conn:
                after_id = 0
                while not stop.is_set():
                    result = conn.execute(audience_query(where, channel, after_id, batch_size,
                                                         attributes_as_text=True))
                    keys = tuple(result.keys())
                    rows = result.cursor.fetchall()  # plain tuples: no Row objects
                    result.close()
                    if rows:
                        fetched.put((keys, rows))
                    if len(rows) < batch_size:
                        break
                    after_id = rows[-1][keys.index("id")]
            fetched.put(None)
        except BaseException as exc:  # handed to the caller, raised there
            fetched.put(exc)

    reader = threading.Thread(target=fetch, name="reach-audience", daemon=True)
    reader.start()
    try:
        while (item := fetched.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield contacts_from_text(*item)
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting to put (the caller stopped early)
            with contextlib.suppress(queue.Empty):
                fetched.get(timeout=0.05)


def count(conn: Connection, where: ColumnElement[bool], channel: str | None = None) -> int:
    """How many contacts match; with ``channel``, only those who can be sent to on it."""
    stmt = select(func.count()).select_from(contacts).where(where, _eligible(channel))
    return int(conn.execute(stmt).scalar_one())


def explain(
    conn: Connection, where: ColumnElement[bool], *, analyze: bool = False
) -> tuple[str, str]:
    """(SQL with values shown, the database's plan) of counting ``where``.

    The SQL text shows values inline for reading only; it is never what is executed.
    """
    stmt = select(func.count()).select_from(contacts).where(where)
    try:
        sql = str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))
    except Exception:  # a type without a literal renderer: show placeholders and params
        compiled = stmt.compile(conn)
        sql = f"{compiled}\n-- parameters: {compiled.params}"
    rows = conn.execute(Explain(stmt, analyze=analyze)).all()
    if conn.dialect.name == "sqlite":  # (id, parent, notused, detail)
        plan = "\n".join(str(r[-1]) for r in rows)
    else:
        plan = "\n".join(str(r[0]) for r in rows)
    return sql, plan
