"""The send ledger: exactly-once delivery bookkeeping.

Every intended message is a row with a unique idempotency key, inserted *before* anything
is sent. A batch claims its rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has a
single writer, so a conditional UPDATE is already atomic), sends, and marks each row.
Rows left in ``sending`` by a crash are never resent blindly: they become ``unknown``.

States: queued → sending → sent | failed | bounced;  sending (lease expired) → unknown.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from campaigns import journal
from reach import clock
from reach.db.bulk import among, insert_rows, update_rows
from reach.db.schema import contacts, messages

QUEUED, SENDING, SENT, FAILED, BOUNCED, UNKNOWN = (
    "queued", "sending", "sent", "failed", "bounced", "unknown",
)
FINAL = (SENT, FAILED, BOUNCED)


def dialect_insert(conn: Connection):  # type: ignore[no-untyped-def]
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def enqueue_select(
    conn: Connection,
    contact_ids: Select[Any],
    *,
    key_prefix: str,
    source_kind: str,
    source_name: str,
    source_version: str,
    channel: str,
    step_id: str | None = None,
    variant: str | None = None,
) -> int:
    """Insert one queued row per contact id selected; existing keys are left alone.

    Set-based (INSERT … SELECT … ON CONFLICT DO NOTHING): a million rows never pass
    through Python, and a second run of the same campaign inserts nothing.
    """
    sub = contact_ids.subquery()
    cid = sub.c[0]
    now = clock.now()
    address = contacts.c.email if channel == "email" else contacts.c.phone
    source = (
        select(
            (literal(key_prefix) + cast(cid, String)).label("idempotency_key"),
            literal(source_kind).label("source_kind"),
            literal(source_name).label("source_name"),
            literal(source_version).label("source_version"),
            literal(step_id, String).label("step_id"),
            literal(variant, String).label("variant"),
            cid.label("contact_id"),
            literal(channel).label("channel"),
            literal(QUEUED).label("status"),
            literal(0).label("attempts"),
            address.label("to_address"),
            literal(now).label("created_at"),
        )
        .select_from(sub.join(contacts, contacts.c.id == cid))
        .order_by(cid)
    )
    cols = [c.name for c in source.selected_columns]
    stmt = dialect_insert(conn)(messages).from_select(cols, source)
    stmt = stmt.on_conflict_do_nothing(index_elements=["idempotency_key"])
    if conn.dialect.name == "postgresql":
        # psycopg reports rowcount -1 for this INSERT … SELECT; count what it returns instead.
        inserted = stmt.returning(messages.c.id).cte("inserted")
        return int(conn.execute(select(func.count()).select_from(inserted)).scalar() or 0)
    return max(0, conn.execute(stmt).rowcount or 0)


def _full_rows(rows: Sequence[dict[str, Any]], **fixed: Any) -> list[dict[str, Any]]:
    """Every row with the same keys (one multi-row INSERT), missing ones None."""
    keys = {k for row in rows for k in row}
    return [{"step_id": None, "variant": None, "to_address": None,
             **{k: None for k in keys}, **row, **fixed} for row in rows]


def enqueue_rows(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert explicit rows (journeys: one step for a few contacts); return ids of new rows."""
    if not rows:
        return []
    values = _full_rows(rows, status=QUEUED, attempts=0, created_at=clock.now())
    return insert_rows(conn, messages, values, conflict=["idempotency_key"],
                       returning=messages.c.id)


def enqueue_leased(conn: Connection, rows: Sequence[dict[str, Any]], *, owner: str,
                   lease: timedelta = timedelta(minutes=10)) -> list[dict[str, Any]]:
    """Insert rows already claimed by ``owner`` (``sending``, one attempt) and return them
    as :func:`claim` would: for a sender that sends what it just queued (a journey tick),
    the claim's UPDATE of every row and its round trips are saved.

    Only for an owner whose in-flight journal is already open: a crash before the first
    attempt then finds the rows in the journal's care, and puts them back in the queue.
    """
    if not rows:
        return []
    now = clock.now()
    values = _full_rows(rows, status=SENDING, attempts=1, created_at=now, attempted_at=now,
                        lease_owner=owner, lease_until=now + lease)
    inserted = dict(insert_rows(conn, messages, values, conflict=["idempotency_key"],
                                returning=[messages.c.idempotency_key, messages.c.id]))
    return [{**row, "id": inserted[row["idempotency_key"]]} for row in values
            if row["idempotency_key"] in inserted]


def claim(
    conn: Connection,
    *,
    owner: str,
    limit: int,
    where: ColumnElement[bool],
    lease: timedelta = timedelta(minutes=10),
) -> list[dict[str, Any]]:
    """Claim up to ``limit`` due queued rows matching ``where`` for ``owner``.

    Two workers claiming at once never get the same row: on PostgreSQL the inner SELECT
    skips rows another transaction has locked; on SQLite writers are serialised.
    """
    now = clock.now()
    due = and_(
        where,
        messages.c.status == QUEUED,
        or_(messages.c.next_attempt_at.is_(None), messages.c.next_attempt_at <= now),
    )
    inner = select(messages.c.id).where(due).order_by(messages.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        inner = inner.with_for_update(skip_locked=True)
    stmt = (
        update(messages)
        .where(messages.c.id.in_(inner.scalar_subquery()), messages.c.status == QUEUED)
        .values(status=SENDING, lease_owner=owner, lease_until=now + lease,
                attempts=messages.c.attempts + 1, attempted_at=now)
        .returning(*messages.c)
        .execution_options(synchronize_session=False)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def mark_sent(conn: Connection, ledger_id: int, *, provider_id: str | None = None,
              segments: int | None = None, subject: str | None = None) -> None:
    conn.execute(
        update(messages)
        .where(messages.c.id == ledger_id, messages.c.status == SENDING)
        .values(status=SENT, provider_id=provider_id, segments=segments, subject=subject,
                sent_at=clock.now(), lease_owner=None, lease_until=None, last_error=None)
    )


def mark_sent_many(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Mark many rows sent at once; each dict has ledger_id, provider_id, segments, subject."""
    update_rows(
        conn, messages,
        [{"id": r["ledger_id"], "provider_id": r["provider_id"], "segments": r["segments"],
          "subject": r["subject"]} for r in rows],
        where=[messages.c.status == SENDING],
        fixed={"status": SENT, "sent_at": clock.now(), "lease_owner": None,
               "lease_until": None, "last_error": None},
    )


def mark_failed(conn: Connection, ledger_id: int, error: str, *, bounced: bool = False) -> None:
    conn.execute(
        update(messages)
        .where(messages.c.id == ledger_id)
        .values(status=BOUNCED if bounced else FAILED, last_error=error[:2000],
                lease_owner=None, lease_until=None)
    )


def next_due(conn: Connection, where: ColumnElement[bool]) -> Any:
    """When the earliest queued row matching ``where`` becomes due (None: nothing queued)."""
    return conn.execute(select(func.min(func.coalesce(messages.c.next_attempt_at,
                                                      messages.c.created_at)))
                        .where(where, messages.c.status == QUEUED)).scalar()


def mark_unknown(conn: Connection, ledger_id: int, error: str) -> None:
    """The provider may have accepted the message: never resend it blindly."""
    conn.execute(
        update(messages).where(messages.c.id == ledger_id)
        .values(status=UNKNOWN, last_error=error[:2000], lease_owner=None, lease_until=None))


def backoff(attempt: int, base: float = 30.0, cap: float = 3600.0) -> timedelta:
    """Exponential backoff with full jitter (AWS architecture blog's recommendation)."""
    return timedelta(seconds=random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1))))


def mark_retry(conn: Connection, ledger_id: int, error: str, *, attempts: int,
               max_attempts: int, delay: timedelta | None = None, base: float = 30.0) -> bool:
    """Put a transiently failed row back in the queue; False when attempts are exhausted."""
    if attempts >= max_attempts:
        mark_failed(conn, ledger_id, f"gave up after {attempts} attempts: {error}")
        return False
    conn.execute(
        update(messages)
        .where(messages.c.id == ledger_id)
        .values(status=QUEUED, last_error=error[:2000], lease_owner=None, lease_until=None,
                next_attempt_at=clock.now() + (delay if delay is not None
                                               else backoff(attempts, base)))
    )
    return True


def release(conn: Connection, ledger_ids: Sequence[int]) -> None:
    """Give claimed but unattempted rows back (e.g. a paused campaign)."""
    if ledger_ids:
        conn.execute(
            update(messages)
            .where(among(conn, messages.c.id, ledger_ids), messages.c.status == SENDING)
            .values(status=QUEUED, lease_owner=None, lease_until=None,
                    attempts=messages.c.attempts - 1)
        )


def recover_stale(conn: Connection, where: ColumnElement[bool], *, resend: bool,
                  journal_dir: Path | None = None) -> int:
    """Rows whose lease expired while ``sending``: their fate is unknown after a crash.

    They become ``unknown`` (counted and reported, never resent), or ``queued`` again when
    the operator chose ``resend_unknown`` and accepts a possible duplicate. A dead sender of
    this machine left a journal (``campaigns.journal``) in ``journal_dir``: what it says
    was delivered is ``sent``, what never left is queued again, and only the rest — the
    messages on the wire when it died — is ``unknown``. Returns how many became unknown.
    """
    now = clock.now()
    expired = messages.c.lease_until < now
    dead = dead_local_owners(conn, where)
    for owner in dead if journal_dir is not None else ():
        _settle_from_journal(conn, where, owner, journal_dir)  # type: ignore[arg-type]
    if dead:
        # A sender on this machine that no longer runs cannot be mid-send: no need to wait
        # for its lease to expire.
        expired = or_(expired, messages.c.lease_owner.in_(dead))
    stale = and_(where, messages.c.status == SENDING, expired)
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
    values["status"] = QUEUED if resend else UNKNOWN
    values["last_error"] = "outcome unknown: the sender stopped while sending"
    return conn.execute(update(messages).where(stale).values(values)).rowcount or 0


def _settle_from_journal(conn: Connection, where: ColumnElement[bool], owner: str,
                         directory: Path) -> None:
    state = journal.read(directory, owner)
    if state is None:
        return  # no trustworthy journal: everything it held stays for 'unknown'
    mine = and_(where, messages.c.status == SENDING, messages.c.lease_owner == owner)
    delivered = [i for i, kind in state.items() if kind == journal.SENT]
    in_flight = [i for i, kind in state.items() if kind == journal.ATTEMPT]
    for ids in _chunks(delivered):
        conn.execute(update(messages).where(mine, among(conn, messages.c.id, ids)).values(
            status=SENT, sent_at=clock.now(), lease_owner=None, lease_until=None,
            last_error="recovered: delivered before the sender stopped"))
    # Rows it claimed but never put on the wire (or that were refused outright) are safe to
    # send: back to the queue, the claim's attempt not counted.
    left = conn.execute(select(messages.c.id).where(mine)).scalars().all()
    never = sorted(set(left) - set(in_flight))
    for ids in _chunks(never):
        conn.execute(update(messages).where(mine, among(conn, messages.c.id, ids)).values(
            status=QUEUED, lease_owner=None, lease_until=None,
            attempts=messages.c.attempts - 1))
    journal.discard(directory, owner)


def _chunks(ids: Sequence[int], size: int = 5000) -> list[Sequence[int]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def dead_local_owners(conn: Connection, where: ColumnElement[bool]) -> list[str]:
    """Lease owners ('host:pid:nonce') on this host whose process has exited."""
    import os
    import socket

    host = socket.gethostname()
    owners = [r[0] for r in conn.execute(
        select(messages.c.lease_owner).where(where, messages.c.status == SENDING,
                                             messages.c.lease_owner.like(f"{host}:%"))
        .distinct())]
    dead = []
    for owner in owners:
        try:
            pid = int(owner.split(":")[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.append(owner)
        except (ValueError, IndexError, PermissionError):
            continue
    return dead


def requeue_unknown(conn: Connection, where: ColumnElement[bool]) -> int:
    """Operator's explicit choice (resend_unknown): unknown rows go back to the queue."""
    return conn.execute(
        update(messages).where(where, messages.c.status == UNKNOWN)
        .values(status=QUEUED, last_error=None)
    ).rowcount or 0


def status_counts(conn: Connection, where: ColumnElement[bool]) -> dict[str, int]:
    rows = conn.execute(
        select(messages.c.status, func.count()).where(where).group_by(messages.c.status)
    )
    return {status: int(n) for status, n in rows}


def recent_error_rate(conn: Connection, where: ColumnElement[bool], window: int,
                      since: Any = None) -> tuple[float, int]:
    """Share of failures among the last ``window`` rows attempted (since ``since``).

    A row retried later counts as a failure until it is sent; rows attempted before
    ``since`` (an earlier run the operator has since resumed) do not count at all.
    """
    attempted = messages.c.attempted_at.is_not(None)
    if since is not None:
        attempted = and_(attempted, messages.c.attempted_at >= since)
    recent = (
        select(messages.c.status, messages.c.last_error)
        .where(where, messages.c.status.in_([SENT, FAILED, BOUNCED, QUEUED]), attempted)
        .order_by(messages.c.attempted_at.desc(), messages.c.id.desc())
        .limit(window)
        .subquery()
    )
    bad_row = or_(recent.c.status.in_([FAILED, BOUNCED]),
                  and_(recent.c.status == QUEUED, recent.c.last_error.is_not(None)))
    failed = func.sum(case((bad_row, 1), else_=0))
    total, bad = conn.execute(select(func.count(), failed).select_from(recent)).one()
    total = int(total or 0)
    return ((float(bad or 0) / total) if total else 0.0), total
