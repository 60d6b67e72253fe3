"""Batched writes of opens and clicks to the ``engagements`` table.

The routes never touch the database for an open or a click: they queue an operation, and
:meth:`EngagementStore.write_batch` (run in a worker thread by the queue) writes a batch in
one transaction. Messages are looked up once per batch, and remembered, because a message's
contact and send time do not change once it has been sent: at peak load the same few
thousand messages are opened over and over, and one query per batch at most is what lets a
single worker persist thousands of opens a second.

Operations are plain tuples so that they are cheap to build and to spool as JSON:

* ``("e", message_id, kind, url, occurred_at_epoch, machine_reason, user_agent, ip)``
* ``("b", message_id, since_epoch)``: the clicks of a message since then were a link burst.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from sqlalchemy import Engine, insert, select, update

from reach.clock import as_utc
from reach.db.schema import engagements, messages
from tracking.classify import CLICK_SCAN_SECONDS, timing_reason

Op = tuple[Any, ...]


def engagement_op(
    message_id: int,
    kind: str,
    at: datetime,
    *,
    url: str | None = None,
    reason: str | None = None,
    user_agent: str | None = None,
    ip: str | None = None,
) -> Op:
    """One engagement operation for the queue."""
    return ("e", message_id, kind, url, at.timestamp(), reason, user_agent, ip)


def burst_op(message_id: int, since: datetime) -> Op:
    """An operation that flags the human clicks of a message since ``since`` as a burst."""
    return ("b", message_id, since.timestamp())


class _Lru:
    """A small thread-safe LRU map (the queue flushes from a worker thread)."""

    def __init__(self, size: int) -> None:
        self._data: OrderedDict[int, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: int) -> Any:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: int, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            if len(self._data) > self._size:
                self._data.popitem(last=False)


class EngagementStore:
    """Writes batches of queued operations; counts what it wrote, by kind."""

    def __init__(self, engine: Engine, cache_size: int = 100_000) -> None:
        self.engine = engine
        self._messages = _Lru(cache_size)  # id -> (contact_id, sent_at)
        self._opened = _Lru(cache_size)  # ids with a human open stored -> True
        self.written: Counter[str] = Counter()
        self.orphans = 0  # events for a message that no longer exists (erased, deleted)

    def start(self) -> None:
        """Nothing to start: batches are written in the calling thread."""

    def close(self) -> None:
        """Nothing to release (the engine belongs to the caller)."""

    async def write_batch_async(self, ops: Sequence[Op]) -> int:
        """:meth:`write_batch` in a worker thread (the engine is synchronous)."""
        return await anyio.to_thread.run_sync(self.write_batch, ops)

    def _message_info(self, conn: Any, ids: set[int]) -> dict[int, tuple[int, datetime | None]]:
        found: dict[int, tuple[int, datetime | None]] = {}
        missing = []
        for mid in ids:
            cached = self._messages.get(mid)
            if cached is not None:
                found[mid] = cached
            else:
                missing.append(mid)
        for start in range(0, len(missing), 900):  # stay under SQLite's variable limit
            chunk = missing[start:start + 900]
            rows = conn.execute(
                select(messages.c.id, messages.c.contact_id, messages.c.sent_at)
                .where(messages.c.id.in_(chunk))
            )
            for mid, contact_id, sent_at in rows:
                info = (contact_id, as_utc(sent_at))
                found[mid] = info
                if sent_at is not None:  # a sent message never changes contact or sent_at
                    self._messages.put(mid, info)
        return found

    def _stored_opens(self, conn: Any, ids: set[int]) -> set[int]:
        unknown = [mid for mid in ids if self._opened.get(mid) is None]
        if not unknown:
            return set(ids)
        rows = conn.execute(
            select(engagements.c.message_id).distinct().where(
                engagements.c.message_id.in_(unknown[:900]),
                engagements.c.kind == "open",
                engagements.c.machine.is_(False),
            )
        )
        opened = {mid for (mid,) in rows}
        for mid in opened:
            self._opened.put(mid, True)
        return opened | (set(ids) - set(unknown))

    def write_batch(self, ops: Sequence[Op]) -> int:
        """Write one batch in one transaction; returns the number of engagements stored."""
        with self.engine.begin() as conn:
            info = self._message_info(conn, {op[1] for op in ops})
            # Clicks soon after the send need to know whether the message was opened.
            early = {
                op[1] for op in ops
                if op[0] == "e" and op[2] == "click" and op[1] in info and info[op[1]][1]
                and op[4] - info[op[1]][1].timestamp() < CLICK_SCAN_SECONDS
            }
            opened = self._stored_opens(conn, early) if early else set()
            rows: list[dict[str, Any]] = []
            bursts: list[Op] = []
            for op in ops:
                if op[0] == "b":
                    bursts.append(op)
                    continue
                _, mid, kind, url, ts, reason, user_agent, ip = op
                if mid not in info:
                    self.orphans += 1
                    continue
                contact_id, sent_at = info[mid]
                at = datetime.fromtimestamp(ts, UTC)
                if reason is None:
                    reason = timing_reason(kind, at, sent_at, opened=mid in opened)
                if kind == "open" and reason is None:
                    opened.add(mid)
                    self._opened.put(mid, True)
                rows.append((mid, contact_id, kind, url, at, reason is not None, reason,
                             user_agent, ip))
            if rows:
                _insert(conn, rows)
            for _, mid, since in bursts:
                conn.execute(
                    update(engagements)
                    .where(
                        engagements.c.message_id == mid,
                        engagements.c.kind == "click",
                        engagements.c.machine.is_(False),
                        engagements.c.occurred_at >= datetime.fromtimestamp(since, UTC),
                    )
                    .values(machine=True, machine_reason="link_burst")
                )
        for row in rows:
            self.written[row[2]] += 1
        return len(rows)


_COLUMNS = ("message_id", "contact_id", "kind", "url", "occurred_at", "machine",
            "machine_reason", "user_agent", "ip")
_COPY = f"COPY engagements ({', '.join(_COLUMNS)}) FROM STDIN"


def _insert(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    """Insert engagement rows: COPY on PostgreSQL (several times cheaper in CPU than a
    multi-row INSERT, which matters when the flusher shares a core with the server), a
    Core executemany elsewhere."""
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        # The same DBAPI connection, inside the transaction SQLAlchemy opened.
        with conn.connection.driver_connection.cursor() as cur, cur.copy(_COPY) as copy:
            for row in rows:
                copy.write_row(row)
        return
    conn.execute(insert(engagements), [dict(zip(_COLUMNS, row, strict=True)) for row in rows])
