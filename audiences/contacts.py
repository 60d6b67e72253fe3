"""Contacts in and out: streaming import with upsert, export, and privacy erasure.

Import reads CSV (``.csv``) or JSON lines (``.jsonl`` / ``.ndjson``) in chunks, so memory
stays constant whatever the file size. Each chunk is one transaction of multi-row
``INSERT … ON CONFLICT DO UPDATE`` statements keyed by email (lower-cased) or, for rows
without an email, ``external_id``. A chunk the database refuses (e.g. an email and an
external_id that belong to two different contacts) is retried row by row so only the
offending rows are rejected. An import never clears a field it was not given, merges
attributes into the existing ones, and never re-subscribes anyone: a status column can
only move a contact to unsubscribed / bounced / complained (recorded with source 'import').
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import Connection, Engine, or_, select, true, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from audiences.audience import stream_audience
from audiences.consent import set_status
from audiences.fields import TYPED, RowError, clean_record
from reach import clock
from reach.db.schema import SUBSCRIBED, UNSUBSCRIBED, contacts, engagements, messages
from reach.errors import ReachError

CHUNK = 2000
_UPDATABLE = [c for c in TYPED if c != "created_at"]


@dataclass(frozen=True)
class RejectedRow:
    """A row that was not imported: its line in the file, why, and its text."""

    line: int
    reason: str
    raw: str


@dataclass
class ImportReport:
    """What an import did."""

    inserted: int = 0
    updated: int = 0
    duplicates: int = 0  # events already recorded (same client id)
    rejected: list[RejectedRow] = field(default_factory=list)  # the first KEEP_REJECTED
    rejected_count: int = 0  # all of them

    # A file of millions of bad rows must not fill memory: keep the first ones in detail
    # (enough to see what is wrong) and count the rest.
    KEEP_REJECTED = 1000

    def reject(self, row: RejectedRow) -> None:
        """Record a rejected row (kept in detail while fewer than KEEP_REJECTED)."""
        self.rejected_count += 1
        if len(self.rejected) < self.KEEP_REJECTED:
            self.rejected.append(row)

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.rejected_count


# line, record, raw (text, or CSV fields: serialised only if the row is rejected), error
Record = tuple[int, dict[str, Any] | None, str | list[str], str | None]


def raw_text(raw: str | list[str]) -> str:
    """The text of a record as it was in the file (CSV fields re-joined)."""
    if isinstance(raw, str):
        return raw
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(raw)
    return out.getvalue()


def read_records(path: Path) -> tuple[Iterator[Record], bool]:
    """(records of the file, whether it is CSV); raises ReachError on an unknown format."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_records(path), True
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl_records(path), False
    raise ReachError("I501", f"cannot import {path.name}: unknown format {suffix or '(none)'}",
                     hint="use a .csv file with a header row, or JSON lines (.jsonl / .ndjson)")


def _csv_records(path: Path) -> Iterator[Record]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        last = reader.line_num
        for row in reader:
            line, last = last + 1, reader.line_num
            if not "".join(row).strip():  # a blank line (one join, not a generator a row)
                continue
            if len(row) > len(header):
                yield line, None, row, f"{len(row)} fields but the header has {len(header)}"
                continue
            yield line, dict(zip(header, row, strict=False)), row, None


def _jsonl_records(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8-sig") as fh:
        for line, text in enumerate(fh, start=1):
            text = text.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield line, None, text, f"invalid JSON: {exc.msg} at column {exc.colno}"
                continue
            if not isinstance(obj, dict):
                yield line, None, text, "each line must be a JSON object"
                continue
            yield line, obj, text, None


@dataclass
class _Row:
    line: int
    raw: str | list[str]
    cols: dict[str, Any]
    statuses: dict[str, str]

    def __post_init__(self) -> None:
        self.target = "email" if "email" in self.cols else "external_id"


def import_contacts(
    engine: Engine, path: Path | str, *, progress: Callable[[int], None] | None = None
) -> ImportReport:
    """Import a CSV or JSON-lines file of contacts (see the module doc for the rules).

    ``progress`` is called after each chunk with the number of records read since its
    last call (a progress bar's ``advance``).
    """
    records, from_csv = read_records(Path(path))
    report = ImportReport()
    chunk: list[_Row] = []
    keys: set[tuple[str, str]] = set()
    seen = reported = 0
    # One writer thread: the database works on chunk n while this thread parses chunk n+1
    # (drivers release the GIL while the server or SQLite works).
    writer = _Writer(engine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reach-import") as pool:
        pending: Future[None] | None = None

        def submit(rows: list[_Row]) -> None:
            nonlocal pending
            if pending is not None:
                pending.result()
            pending = pool.submit(writer.flush, rows, report)

        for line, record, raw, error in records:
            seen += 1
            if error is None and record is not None:
                try:
                    cols, statuses = clean_record(record, from_csv)
                except RowError as exc:
                    error = str(exc)
            if error is not None:
                report.reject(RejectedRow(line, error, raw_text(raw)))
                continue
            row = _Row(line, raw, cols, statuses)
            row_keys = {(k, str(cols[k])) for k in ("email", "external_id") if k in cols}
            if row_keys & keys or len(chunk) >= CHUNK:
                # A second row for the same contact goes to the next statement: PostgreSQL
                # refuses to update one row twice in a single INSERT … ON CONFLICT.
                submit(chunk)
                chunk, keys = [], set()
                if progress:
                    progress(seen - reported)
                    reported = seen
            chunk.append(row)
            keys |= row_keys
        submit(chunk)
        if pending is not None:
            pending.result()
        pool.submit(writer.close).result()
    report.rejected.sort(key=lambda r: r.line)
    if progress:
        progress(seen - reported)
    return report


class _Writer:
    """The import's database side, run in its one thread, on one connection for the whole
    import: a pool checkout per chunk cost a ping, and each round trip of this thread can
    wait up to a GIL switch interval (5 ms) while the parsing thread runs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None

    def flush(self, chunk: list[_Row], report: ImportReport) -> None:
        if not chunk:
            return
        if self.conn is None:
            self.conn = self.engine.connect()
        try:
            with self.conn.begin():
                inserted, updated = _upsert(self.conn, chunk)
        except DBAPIError as exc:
            if len(chunk) > 1:
                for row in chunk:  # find the rows the database refuses; import the others
                    self.flush([row], report)
                return
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if "unique" in reason.lower():
                reason = ("conflicts with another contact: its email and external_id belong "
                          f"to two different contacts ({reason})")
            report.reject(RejectedRow(chunk[0].line, reason, raw_text(chunk[0].raw)))
            return
        report.inserted += inserted
        report.updated += updated

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _upsert(conn: Connection, rows: list[_Row]) -> tuple[int, int]:
    pg = conn.dialect.name == "postgresql"
    now = clock.now()
    stamp: Any = now if pg else _sqlite_time(now)
    groups: dict[tuple[str, bool], list[tuple[Any, ...]]] = {}
    for row in rows:
        cols = row.cols
        created = cols.get("created_at")
        values = (*(cols.get(c) for c in _UPDATABLE),
                  _attributes_json(cols["attributes"]),
                  stamp if created is None else (created if pg else _sqlite_time(created)),
                  stamp)
        groups.setdefault((row.target, created is not None), []).append(values)
    inserted = 0
    existing = set() if pg else _existing(conn, rows)
    for (target, with_created), batch in groups.items():
        # Driver level: SQLAlchemy's per-row parameter processing cost more than the
        # database's work. PostgreSQL: the chunk as one JSON document, read by
        # jsonb_array_elements in one INSERT … SELECT … ON CONFLICT (xmax = 0 marks a fresh
        # row); SQLite (in-process): executemany. Values travel as data either way, never
        # inside SQL text.
        if pg:
            flags = conn.exec_driver_sql(_upsert_sql(pg, target, with_created),
                                         {"rows": _document(batch)}).scalars()
            inserted += sum(1 for fresh in flags if fresh)
        else:
            conn.exec_driver_sql(_upsert_sql(pg, target, with_created), batch)
    if not pg:
        inserted = sum(1 for r in rows if (r.target, str(r.cols[r.target])) not in existing)
    _apply_statuses(conn, [r for r in rows if r.statuses])
    return inserted, len(rows) - inserted


def _attributes_json(attributes: dict[str, Any]) -> str:
    """orjson (several times faster); the standard library for what orjson refuses, such
    as integers beyond 64 bits, which a CSV column of long numbers produces."""
    try:
        return orjson.dumps(attributes, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(attributes, ensure_ascii=False, default=str)


def _sqlite_time(value: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores (UTC, no offset)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _existing(conn: Connection, rows: list[_Row]) -> set[tuple[str, str]]:
    emails = [r.cols["email"] for r in rows if "email" in r.cols]
    ext_ids = [r.cols["external_id"] for r in rows if "email" not in r.cols]
    found: set[tuple[str, str]] = set()
    if emails:
        found |= {("email", e) for (e,) in
                  conn.execute(select(contacts.c.email).where(contacts.c.email.in_(emails)))}
    if ext_ids:
        found |= {("external_id", x) for (x,) in conn.execute(
            select(contacts.c.external_id).where(contacts.c.external_id.in_(ext_ids)))}
    return found


_NAMES = [*_UPDATABLE, "attributes", "created_at", "updated_at"]
_TYPES = {"attributes": "JSONB", "created_at": "TIMESTAMPTZ", "updated_at": "TIMESTAMPTZ"}


def _document(batch: list[tuple[Any, ...]]) -> str:
    """A chunk as one JSON array of arrays, written by orjson in C straight from the row
    tuples (no per-row Python work: building an object per row cost as much as the rest of
    the writer's Python). The attributes are JSON text inside it, cast back to jsonb by the
    server. (It replaced COPY into a temporary table: psycopg formats COPY rows in Python,
    and the import's parsing and writing threads share one GIL.)"""
    return orjson.dumps(batch, default=str, option=orjson.OPT_NAIVE_UTC).decode()


@lru_cache(maxsize=8)
def _upsert_sql(pg: bool, target: str, with_created: bool) -> str:
    """The upsert keyed by ``target``; only fixed names and placeholders in the text."""
    names = ", ".join(_NAMES)
    if pg:
        fields = ", ".join(f"(v->>{i})::{_TYPES.get(c, 'VARCHAR')}" for i, c in enumerate(_NAMES))
        source = (f"SELECT {fields}, '{SUBSCRIBED}', '{SUBSCRIBED}' "
                  f"FROM jsonb_array_elements(%(rows)s::jsonb) AS v")
    else:
        source = f"VALUES ({', '.join(['?'] * len(_NAMES))}, '{SUBSCRIBED}', '{SUBSCRIBED}')"
    sets = [f"{c} = coalesce(excluded.{c}, contacts.{c})" for c in _UPDATABLE if c != target]
    sets.append("attributes = contacts.attributes || excluded.attributes" if pg
                else "attributes = json_patch(contacts.attributes, excluded.attributes)")
    sets.append("updated_at = excluded.updated_at")
    if with_created:
        sets.append("created_at = excluded.created_at")
    return (f"INSERT INTO contacts ({names}, email_status, sms_status) {source} "
            f"ON CONFLICT ({target}) DO UPDATE SET {', '.join(sets)}"
            + (" RETURNING (xmax = 0)" if pg else ""))


def _apply_statuses(conn: Connection, rows: list[_Row]) -> None:
    if not rows:
        return
    emails = [r.cols["email"] for r in rows if "email" in r.cols]
    ext_ids = [r.cols["external_id"] for r in rows if "external_id" in r.cols]
    ids: dict[tuple[str, str], int] = {}
    query = select(contacts.c.id, contacts.c.email, contacts.c.external_id).where(
        or_(contacts.c.email.in_(emails), contacts.c.external_id.in_(ext_ids)))
    for cid, email, ext in conn.execute(query):
        ids[("email", email)] = cid
        ids[("external_id", ext)] = cid
    for row in rows:
        cid = ids.get((row.target, str(row.cols[row.target])))
        for channel, status in row.statuses.items():
            if cid is not None and status != SUBSCRIBED:  # an import never re-subscribes
                set_status(conn, cid, channel, status, source="import")


# --- export and erasure -------------------------------------------------------------------

EXPORT_COLUMNS = ("id", "external_id", "email", "phone", "first_name", "last_name", "country",
                  "timezone", "locale", "email_status", "sms_status", "created_at")


def _attribute_keys(conn: Connection) -> list[str]:
    if conn.dialect.name == "postgresql":
        sql = ("SELECT DISTINCT jsonb_object_keys(attributes) AS k FROM contacts "
               "WHERE erased_at IS NULL ORDER BY k")
    else:
        sql = ("SELECT DISTINCT je.key FROM contacts, json_each(contacts.attributes) AS je "
               "WHERE contacts.erased_at IS NULL ORDER BY je.key")
    return [k for (k,) in conn.exec_driver_sql(sql) if k not in EXPORT_COLUMNS]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def export_contacts(
    engine: Engine, out: Path | str | IO[str], fmt: str = "csv", *,
    where: ColumnElement[bool] | None = None, progress: Callable[[int], None] | None = None,
) -> int:
    """Write every non-erased contact (those matching ``where``, a compiled segment, when
    given) as CSV (attributes as extra columns) or JSON lines (attributes nested); returns
    how many were written. Streams the audience in keyset batches
    (:func:`audiences.audience.stream_audience`), so memory stays flat at any size.
    ``progress`` gets the number of contacts written since its last call."""
    if fmt not in ("csv", "jsonl"):
        raise ReachError("I501", f"unknown export format {fmt!r}", hint="use csv or jsonl")
    written = 0
    with ExitStack() as stack:
        fh: IO[str] = (stack.enter_context(Path(out).open("w", newline="", encoding="utf-8"))
                       if isinstance(out, str | Path) else out)
        with engine.connect() as conn:
            attr_keys = _attribute_keys(conn) if fmt == "csv" else []
        writer = csv.writer(fh) if fmt == "csv" else None
        if writer:
            writer.writerow([*EXPORT_COLUMNS, *attr_keys])
        for batch in stream_audience(engine, true() if where is None else where, None):
            for c in batch:
                if writer:
                    attrs = c.get("attributes") or {}
                    writer.writerow([_cell(c.get(k)) for k in EXPORT_COLUMNS]
                                    + [_cell(attrs.get(k)) for k in attr_keys])
                else:
                    obj = {k: c.get(k) for k in EXPORT_COLUMNS}
                    obj["attributes"] = c.get("attributes") or {}
                    fh.write(json.dumps(obj, default=_cell, ensure_ascii=False) + "\n")
            written += len(batch)
            if progress:
                progress(len(batch))
    return written


def erase_contact(engine: Engine, email: str) -> bool:
    """Privacy erasure: remove the contact's personal data, keep the row for counts.

    Statuses become unsubscribed (with history), every personal column and the attributes
    are emptied, the address is removed from the send ledger and IP / user agent from
    engagement rows. Messages, events and engagements stay counted. False if not found.
    """
    address = email.strip().lower()
    with engine.begin() as conn:
        cid = conn.execute(select(contacts.c.id).where(
            contacts.c.email == address, contacts.c.erased_at.is_(None))).scalar()
        if cid is None:
            return False
        for channel in ("email", "sms"):
            set_status(conn, cid, channel, UNSUBSCRIBED, source="erasure",
                       reason="privacy erasure request")
        now = clock.now()
        conn.execute(update(contacts).where(contacts.c.id == cid).values(
            email=None, phone=None, first_name=None, last_name=None, external_id=None,
            country=None, timezone=None, locale=None, attributes={}, erased_at=now,
            updated_at=now, email_status=UNSUBSCRIBED, sms_status=UNSUBSCRIBED))
        conn.execute(update(messages).where(messages.c.contact_id == cid).values(to_address=None))
        conn.execute(update(engagements).where(engagements.c.contact_id == cid)
                     .values(ip=None, user_agent=None))
    return True
