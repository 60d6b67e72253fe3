"""Behavioural events in: JSON-lines import and the batch writer behind ``POST /events``.

An event is ``{"contact": "<email or external_id>", "type": "purchase", "occurred_at":
"<ISO 8601>", "properties": {...}, "id": "<optional client event id>"}``. The client id is
stored as ``events.event_key`` (unique), so importing or posting the same event twice
records it once. ``occurred_at`` defaults to now.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from audiences.contacts import ImportReport, RejectedRow
from reach import clock
from reach.db.schema import contacts, events
from reach.errors import ReachError

CHUNK = 5000


@dataclass(frozen=True)
class _Event:
    contact: str
    type: str
    occurred_at: datetime
    properties: dict[str, Any]
    key: str | None


class EventError(ReachError):
    """A batch of events that cannot be recorded; ``problems`` lists (index, reason)."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        listing = "; ".join(f"event {i}: {reason}" for i, reason in problems[:20])
        super().__init__("I501", f"{len(problems)} invalid event(s): {listing}",
                         hint="fix these events and send the batch again; nothing was recorded")
        self.problems = problems


def parse_event(obj: Any) -> _Event:
    """Validate one event object; raises ValueError with the reason."""
    if not isinstance(obj, dict):
        raise ValueError("an event must be a JSON object")
    unknown = set(obj) - {"contact", "type", "occurred_at", "properties", "id"}
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}; allowed: contact, "
                         "type, occurred_at, properties, id")
    contact, kind = obj.get("contact"), obj.get("type")
    if not isinstance(contact, str) or not contact.strip():
        raise ValueError("'contact' (an email or external_id) is required")
    if not isinstance(kind, str) or not kind.strip() or len(kind) > 64:
        raise ValueError("'type' is required: a name of at most 64 characters")
    when = obj.get("occurred_at")
    try:
        occurred = clock.parse_instant(when) if isinstance(when, str) else clock.now()
    except clock.ClockError as exc:
        raise ValueError(f"invalid occurred_at {when!r}: use ISO 8601") from exc
    if when is not None and not isinstance(when, str):
        raise ValueError("'occurred_at' must be an ISO 8601 string")
    props = obj.get("properties") or {}
    if not isinstance(props, dict):
        raise ValueError("'properties' must be an object")
    key = obj.get("id")
    if key is not None and (isinstance(key, bool) or not isinstance(key, str | int)
                            or not str(key) or len(str(key)) > 255):
        raise ValueError("'id' must be a string of at most 255 characters")
    return _Event(contact.strip(), kind.strip(), occurred, props,
                  None if key is None else str(key))


def _resolve(conn: Connection, refs: set[str]) -> dict[str, int]:
    """contact reference (email, any case, or external_id) -> contact id."""
    if not refs:
        return {}
    lowered = {r.lower() for r in refs}
    found: dict[str, int] = {}
    query = select(contacts.c.id, contacts.c.email, contacts.c.external_id).where(
        or_(contacts.c.email.in_(lowered), contacts.c.external_id.in_(refs)))
    for cid, email, ext in conn.execute(query):
        if ext is not None:
            found.setdefault(ext, cid)
        if email is not None:
            found[email] = cid  # an email wins over an external_id that looks the same
    return {r: found[r.lower()] if r.lower() in found else found[r]
            for r in refs if r.lower() in found or r in found}


def _write(conn: Connection, rows: list[tuple[_Event, int]]) -> int:
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (dialect.insert(events)
            .on_conflict_do_nothing(index_elements=[events.c.event_key])
            .returning(events.c.id))
    now = clock.now()
    params = [{"contact_id": cid, "type": e.type, "occurred_at": e.occurred_at,
               "properties": e.properties, "event_key": e.key, "received_at": now}
              for e, cid in rows]
    return len(conn.execute(stmt, params).all())


def record_events(conn: Connection, batch: list[dict[str, Any]]) -> int:
    """Record a batch (all or nothing); returns how many were new (not already recorded).

    Raises :class:`EventError` listing every invalid event or unknown contact.
    """
    parsed: list[_Event] = []
    problems: list[tuple[int, str]] = []
    for i, obj in enumerate(batch):
        try:
            parsed.append(parse_event(obj))
        except ValueError as exc:
            problems.append((i, str(exc)))
    ids = _resolve(conn, {e.contact for e in parsed}) if not problems else {}
    if not problems:
        problems = [(i, f"unknown contact {e.contact!r}")
                    for i, e in enumerate(parsed) if e.contact not in ids]
    if problems:
        raise EventError(problems)
    return _write(conn, [(e, ids[e.contact]) for e in parsed])


def import_events(engine: Engine, path: Path | str, *,
                  progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import a JSON-lines file of events; ``inserted`` counts new events, ``duplicates``
    those already recorded (same ``id``), and bad lines / unknown contacts are rejected.
    ``progress`` gets the number of lines read since its last call, after each chunk."""
    report = ImportReport()
    chunk: list[tuple[int, str, _Event]] = []
    reported = line = 0
    with Path(path).open(encoding="utf-8-sig") as fh:
        for line, text in enumerate(fh, start=1):
            text = text.strip()
            if not text:
                continue
            try:
                chunk.append((line, text, parse_event(json.loads(text))))
            except json.JSONDecodeError as exc:
                report.reject(RejectedRow(line, f"invalid JSON: {exc.msg}", text))
            except ValueError as exc:
                report.reject(RejectedRow(line, str(exc), text))
            if len(chunk) >= CHUNK:
                _import_chunk(engine, chunk, report)
                chunk = []
                if progress:
                    progress(line - reported)
                    reported = line
    _import_chunk(engine, chunk, report)
    if progress:
        progress(line - reported)
    report.rejected.sort(key=lambda r: r.line)
    return report


def _import_chunk(engine: Engine, chunk: list[tuple[int, str, _Event]],
                  report: ImportReport) -> None:
    if not chunk:
        return
    with engine.begin() as conn:
        ids = _resolve(conn, {e.contact for _, _, e in chunk})
        rows = []
        for line, text, event in chunk:
            if event.contact in ids:
                rows.append((event, ids[event.contact]))
            else:
                report.reject(
                    RejectedRow(line, f"unknown contact {event.contact!r}", text))
        written = _write(conn, rows)
    report.inserted += written
    report.duplicates += len(rows) - written
