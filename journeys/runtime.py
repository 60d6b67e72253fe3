"""One tick of a journey, without Prefect: enrol, claim due contacts in batches, execute
their steps, send what they queued, store where each contact is now.

A waiting contact is only a row in ``journey_states`` (``due_at``): no worker and no flow
run waits. Two ticks running at once never process the same contact: a batch is claimed
with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises writers), and
every side effect is also guarded by ``journey_steps`` and the ledger's idempotency key.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, or_, select, update

from campaigns import ledger
from campaigns.journal import Journal
from campaigns.sender import (
    load_contacts,
    mark_results,
    open_journal,
    push_all,
    send_claimed,
    send_rows,
)
from journeys import enrol as entry
from journeys.plan import ChannelPlan, JourneyPlan
from journeys.steps import EXECUTORS, Tick, Walker
from reach import clock
from reach.db.bulk import among, update_rows
from reach.db.schema import contacts, journey_states, messages
from reach.settings import Settings

js = journey_states
LEASE = timedelta(minutes=10)
MAX_ROUNDS = 200  # steps one contact may take in one tick (a plan is a tree: far fewer)


@dataclass
class TickStats:
    """What one tick of one journey did."""

    journey: str
    version: str
    enrolled: int = 0
    reentered: int = 0
    advanced: int = 0  # contacts whose due step was executed
    batches: int = 0
    held: int = 0  # sends postponed by quiet hours or a frequency cap
    woken: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    steps: dict[str, int] = field(default_factory=dict)
    exited: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, Any] = field(default_factory=dict)  # ab_test steps decided now

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def merge(self, other: TickStats) -> None:
        for name in ("enrolled", "reentered", "advanced", "batches", "held", "woken", "sent",
                     "failed", "retried"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for table, more in ((self.steps, other.steps), (self.exited, other.exited)):
            for key, n in more.items():
                table[key] = table.get(key, 0) + n
        self.decisions.update(other.decisions)


def source_where(plan: JourneyPlan) -> Any:
    return and_(messages.c.source_kind == "journey", messages.c.source_name == plan.name)


def prepare_tick(settings: Settings, engine: Engine, plan: JourneyPlan) -> TickStats:
    """The set-based part: store the version, settle crashed sends, exits, wake-ups and
    enrolment. Safe to run concurrently and repeatedly."""
    now = clock.now()
    stats = TickStats(journey=plan.name, version=plan.version)
    entry.record_definition(engine, plan)
    with engine.begin() as conn:
        ledger.recover_stale(conn, source_where(plan), resend=settings.resend_unknown,
                             journal_dir=settings.journal_dir)
    removed = entry.exit_removed_steps(engine, plan, now)
    if removed:
        stats.exited["step_removed"] = removed
    goal = entry.exit_on_goal(engine, plan, now)
    if goal:
        stats.exited["goal"] = goal
    stats.enrolled, stats.reentered = entry.enrol(engine, plan, now)
    stats.woken = entry.wake_waiters(engine, plan, now)
    return stats


def claim_states(conn: Connection, plan: JourneyPlan, *, owner: str, limit: int
                 ) -> list[dict[str, Any]]:
    """Lease up to ``limit`` due active states of the journey for ``owner``."""
    now = clock.now()
    free = or_(js.c.lease_until.is_(None), js.c.lease_until < now)
    due = and_(js.c.journey == plan.name, js.c.status == entry.ACTIVE, js.c.due_at <= now, free)
    # ORDER BY due_at alone: the index (journey, status, due_at) yields that order and the
    # LIMIT stops the scan; adding id as a tie-break made PostgreSQL sort every due row for
    # every batch (100,000 due: 64 ms a claim instead of 1.3 ms).
    inner = select(js.c.id).where(due).order_by(js.c.due_at).limit(limit)
    if conn.dialect.name == "postgresql":
        inner = inner.with_for_update(skip_locked=True)
    stmt = (update(js).where(js.c.id.in_(inner.scalar_subquery()), free,
                             js.c.status == entry.ACTIVE)
            .values(lease_owner=owner, lease_until=now + LEASE)
            .returning(*(js.c[name] for name in _WALKER_COLUMNS)))
    return [dict(zip(_WALKER_COLUMNS, r, strict=True)) for r in conn.execute(stmt)]


# What a walker needs of its state row (the claim returns only these).
_WALKER_COLUMNS = ("id", "contact_id", "entry_count", "entered_at", "step_id", "due_at",
                   "waiting_event", "wait_since", "wait_deadline")


def _walkers(conn: Connection, rows: list[dict[str, Any]]) -> list[Walker]:
    tz = dict(conn.execute(select(contacts.c.id, contacts.c.timezone).where(
        among(conn, contacts.c.id, [r["contact_id"] for r in rows]))).all())
    utc = clock.as_utc
    return [Walker(id=r["id"], contact_id=r["contact_id"], entry_count=r["entry_count"],
                   entered_at=utc(r["entered_at"]), step_id=r["step_id"],  # type: ignore[arg-type]
                   due_at=utc(r["due_at"]), waiting_event=r["waiting_event"],
                   wait_since=utc(r["wait_since"]), wait_deadline=utc(r["wait_deadline"]),
                   tz=tz.get(r["contact_id"]))
            for r in rows]


def run_batch(settings: Settings, engine: Engine, plan: JourneyPlan, *, owner: str,
              batch_size: int, stats: TickStats) -> int:
    """Claim one batch of due contacts, walk each as far as it goes now, store the new
    states and send the messages queued; returns how many contacts were claimed."""
    with engine.begin() as conn:
        rows = claim_states(conn, plan, owner=owner, limit=batch_size)
        if not rows:
            return 0
        walkers = _walkers(conn, rows)
    # The journal opens before any message row is queued, so that rows queued already
    # claimed (Tick.owner) are in its care from the start: after a crash, the ones never
    # attempted go back to the queue. Without one (a read-only folder) rows are queued
    # and claimed as campaigns do.
    journal = open_journal(settings, owner)
    tick = Tick(plan=plan, now=clock.now(), stats=stats,
                owner=owner if journal is not None else None)
    sending = False
    try:
        _walk(engine, plan, tick, walkers)
        _store(engine, plan, walkers, owner, tick)
        stats.advanced += len(walkers)
        stats.batches += 1
        sending = True
        _send_new(settings, engine, plan, tick, owner, stats, journal)
    except BaseException:
        if not sending:
            with engine.begin() as conn:  # queued claimed, never attempted: give them back
                ledger.release(conn, [r["id"] for rs in tick.leased.values() for r in rs])
        raise
    finally:
        if journal is not None:
            journal.close()
    return len(walkers)


def _walk(engine: Engine, plan: JourneyPlan, tick: Tick, walkers: list[Walker]) -> None:
    """Execute steps round by round until every walker waits, left, or hit MAX_ROUNDS."""
    pending = walkers
    for _ in range(MAX_ROUNDS):
        if not pending:
            break
        groups: dict[str | None, list[Walker]] = defaultdict(list)
        for w in pending:
            w.moving = False
            groups[w.step_id].append(w)
        for step_id, group in groups.items():
            node = plan.nodes.get(step_id or "")
            if node is None:
                for w in group:
                    tick.finish(w, "exited", "step_removed")
                continue
            with engine.begin() as conn:
                EXECUTORS[node.kind](conn, tick, node, group)
        pending = [w for w in pending if w.moving and w.status == entry.ACTIVE]


def _store(engine: Engine, plan: JourneyPlan, walkers: list[Walker], owner: str,
           tick: Tick) -> None:
    rows = [{"id": w.id, "step_id": w.step_id, "status": w.status,
             "exit_reason": w.exit_reason,
             "due_at": w.due_at if w.status == "active" else None,
             "waiting_event": w.waiting_event, "wait_since": w.wait_since,
             "wait_deadline": w.wait_deadline,
             "exited_at": None if w.status == "active" else tick.now} for w in walkers]
    with engine.begin() as conn:
        update_rows(conn, js, rows, where=[js.c.lease_owner == owner],
                    fixed={"version": plan.version, "lease_owner": None, "lease_until": None})


def _add(stats: TickStats, counts: dict[str, Any]) -> None:
    stats.sent += counts.get("sent", 0)
    stats.failed += counts.get("failed", 0) + counts.get("bounced", 0)
    stats.retried += counts.get("retried", 0)


def _send_new(settings: Settings, engine: Engine, plan: JourneyPlan, tick: Tick, owner: str,
              stats: TickStats, journal: Journal | None) -> None:
    for channel, rows in tick.leased.items():
        if rows:
            _add(stats, send_rows(settings, engine, ChannelPlan(plan, channel), rows,
                                  owner=owner, journal=journal))
    for channel, ids in tick.new_ids.items():
        if not ids:
            continue
        # A range, not a list of ids: the claim query runs once per chunk, and a thousand
        # bound ids per run cost more to send to the database than the rows themselves.
        # Rows of this journey inside the range that another tick queued are claimed
        # exclusively too, so either sends them once.
        where = and_(source_where(plan), messages.c.channel == channel,
                     messages.c.id.between(min(ids), max(ids)))
        if channel == "webhook":
            _add(stats, send_webhooks(settings, engine, plan, where, owner=owner))
        else:
            _add(stats, send_claimed(settings, engine, ChannelPlan(plan, channel), where,
                                     owner=owner))


def send_pending(settings: Settings, engine: Engine, plan: JourneyPlan, *, owner: str,
                 stats: TickStats) -> None:
    """Rows of earlier ticks still queued (transient failures whose retry time came)."""
    with engine.connect() as conn:
        channels = [r[0] for r in conn.execute(
            select(messages.c.channel).where(source_where(plan),
                                             messages.c.status == ledger.QUEUED).distinct())]
    for channel in channels:
        where = and_(source_where(plan), messages.c.channel == channel)
        if channel == "webhook":
            _add(stats, send_webhooks(settings, engine, plan, where, owner=owner))
        else:
            _add(stats, send_claimed(settings, engine, ChannelPlan(plan, channel), where,
                                     owner=owner))


def webhook_transport(settings: Settings) -> str:
    """``outbox`` (calls written under outbox/webhook/) unless ``webhook_transport`` says
    ``webhook`` (real signed POSTs)."""
    return settings.webhook_transport or "outbox"


def webhook_body(plan: JourneyPlan, row: dict[str, Any], person: dict[str, Any]) -> str:
    """The JSON a webhook step POSTs: who, where in which journey, and the step's fields."""
    node = plan.nodes.get(row["step_id"])
    extra = node.config.get("body", {}) if node else {}
    entry_count = row["idempotency_key"].rsplit(":", 2)[-2]
    return json.dumps({
        **extra, "journey": plan.name, "version": row["source_version"],
        "step": row["step_id"], "entry": int(entry_count),
        "contact": {k: person.get(k) for k in ("id", "external_id", "email", "phone",
                                               "first_name", "last_name")},
        "sent_at": clock.now().isoformat()}, default=str, sort_keys=True)


def send_webhooks(settings: Settings, engine: Engine, plan: JourneyPlan, where: Any, *,
                  owner: str) -> dict[str, int]:
    """Claim, POST (signed, by the webhook messenger) and mark the webhook rows of ``where``."""
    return asyncio.run(_send_webhooks(settings, engine, plan, where, owner))


async def _send_webhooks(settings: Settings, engine: Engine, plan: JourneyPlan, where: Any,
                         owner: str) -> dict[str, int]:
    from campaigns.channels.base import OutgoingMessage
    from campaigns.channels.registry import open_messenger

    counts = {"sent": 0, "failed": 0, "bounced": 0, "retried": 0}
    messenger = open_messenger("webhook", webhook_transport(settings), settings)
    try:
        while True:
            with engine.begin() as conn:
                rows = ledger.claim(conn, owner=owner, limit=100,
                                    where=and_(where, messages.c.channel == "webhook"))
                if not rows:
                    break
                people = load_contacts(conn, [r["contact_id"] for r in rows])
            items: list[tuple[dict[str, Any], Any]] = []
            for row in rows:
                body = webhook_body(plan, row, people.get(row["contact_id"], {}))
                items.append((row, OutgoingMessage(ledger_id=row["id"], channel="webhook",
                                                   to=row["to_address"], sender="", body=body)))
            results = await push_all(messenger, items, 4, None)
            mark_results(settings, engine, items, results, counts)
    finally:
        await messenger.close()
    return counts


def tick_journey(settings: Settings, engine: Engine, plan: JourneyPlan, *, owner: str,
                 batch_size: int = 500, processes: int | None = None) -> TickStats:
    """One tick of one journey: enrol, then claim and advance due contacts batch by batch
    until none is due, sending what they queued (with helper processes on PostgreSQL when
    many are due: :mod:`journeys.parallel`; ``processes`` overrides ``tick_processes``)."""
    from journeys.parallel import drain

    stats = prepare_tick(settings, engine, plan)
    drain(settings, engine, plan, owner=owner, batch_size=batch_size, stats=stats,
          processes=processes)
    send_pending(settings, engine, plan, owner=owner, stats=stats)
    from journeys.abdecide import decide_tests

    stats.decisions.update(decide_tests(engine, plan))
    return stats
