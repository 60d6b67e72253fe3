"""Executing one step for a group of contacts at once (all at the same step id).

Each executor moves every walker of the group: on to another step (``go``), holding at
this one until a time (``hold``), or out of the journey (``finish``). Side effects are
guarded by ``journey_steps`` (one row per contact, entry and step, inserted before the
effect): a step already recorded for this entry is skipped, never repeated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, cast, func, select, update
from sqlalchemy.dialects.postgresql import JSONB

from audiences.compiler import eligible_clause
from campaigns import ledger
from journeys import timing
from journeys.conditions import compile_branch, idempotency_key, matching
from journeys.plan import JourneyPlan, Node
from reach import clock
from reach.db.bulk import among, insert_rows
from reach.db.schema import ab_assignments, ab_decisions, contacts, journey_steps
from reports.assign import assign_variant


@dataclass
class Walker:
    """One contact's journey state while its batch is processed."""

    id: int
    contact_id: int
    entry_count: int
    entered_at: datetime
    step_id: str | None
    due_at: datetime | None = None
    waiting_event: str | None = None
    wait_since: datetime | None = None
    wait_deadline: datetime | None = None
    status: str = "active"
    exit_reason: str | None = None
    tz: str | None = None
    moving: bool = True  # execute the current step in the next round


@dataclass
class Tick:
    """What the executors share while one batch is processed."""

    plan: JourneyPlan
    now: datetime
    stats: Any
    new_ids: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    # With an open in-flight journal, email and SMS rows are inserted already claimed by
    # this lease owner and sent from memory (``campaigns.ledger.enqueue_leased``).
    owner: str | None = None
    leased: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def zone(self, w: Walker) -> Any:
        return timing.contact_zone(self.plan.settings.get("timezone", "UTC"), w.tz)

    def go(self, w: Walker, target: str | None) -> None:
        w.waiting_event = w.wait_since = w.wait_deadline = None
        if target is None:
            self.finish(w, "done", None)
            return
        w.step_id, w.due_at, w.moving = target, self.now, True

    def hold(self, w: Walker, until: datetime) -> None:
        w.due_at, w.moving = until, False

    def finish(self, w: Walker, status: str, reason: str | None) -> None:
        w.status, w.exit_reason, w.due_at, w.moving = status, reason, None, False
        w.waiting_event = w.wait_since = w.wait_deadline = None
        key = reason or "completed"
        self.stats.exited[key] = self.stats.exited.get(key, 0) + 1


def record(conn: Connection, tick: Tick, node: Node, walkers: list[Walker],
           outcome: str) -> set[int]:
    """Record the step for each walker's entry; return the contact ids recorded now (the
    others had it already in this entry and must not get it again)."""
    if not walkers:
        return set()
    rows = [{"journey": tick.plan.name, "contact_id": w.contact_id,
             "entry_count": w.entry_count, "step_id": node.id, "outcome": outcome,
             "executed_at": tick.now} for w in walkers]
    new = set(insert_rows(conn, journey_steps, rows,
                          conflict=["journey", "contact_id", "entry_count", "step_id"],
                          returning=journey_steps.c.contact_id))
    tick.stats.steps[node.id] = tick.stats.steps.get(node.id, 0) + len(new)
    return new


def set_outcome(conn: Connection, tick: Tick, node: Node, walkers: list[Walker],
                outcome: str) -> None:
    if walkers:
        conn.execute(update(journey_steps).where(
            journey_steps.c.journey == tick.plan.name,
            journey_steps.c.contact_id == bindparam("cid"),
            journey_steps.c.entry_count == bindparam("entry"),
            journey_steps.c.step_id == node.id).values(outcome=outcome),
            [{"cid": w.contact_id, "entry": w.entry_count} for w in walkers])


# --- messages ------------------------------------------------------------------------------

def _send(conn: Connection, tick: Tick, node: Node, items: list[tuple[Walker, str, dict]]
          ) -> None:
    """Queue one message per (walker, variant, message): quiet hours and frequency caps
    hold the walker at this step; unsubscribed contacts skip it."""
    settings = tick.plan.settings
    ready: list[tuple[Walker, str, dict]] = []
    for w, variant, msg in items:
        until = timing.quiet_until(tick.now, settings.get("quiet_hours"), tick.zone(w))
        if until is not None:
            tick.hold(w, until)
            tick.stats.held += 1
        else:
            ready.append((w, variant, msg))
    by_channel: dict[str, list[tuple[Walker, str, dict]]] = defaultdict(list)
    for item in ready:
        by_channel[item[2]["channel"]].append(item)
    caps = timing.caps(settings)
    for channel, group in by_channel.items():
        ids = [w.contact_id for w, _, _ in group]
        address = contacts.c.email if channel == "email" else contacts.c.phone
        reachable = dict(conn.execute(select(contacts.c.id, address).where(
            among(conn, contacts.c.id, ids), eligible_clause(channel))).all())
        skipped = [w for w, _, _ in group if w.contact_id not in reachable]
        record(conn, tick, node, skipped, "suppressed")
        for w in skipped:
            tick.go(w, node.next)
        group = [g for g in group if g[0].contact_id in reachable]
        if channel in caps:
            limit, window = caps[channel]
            free = timing.cap_free_at(conn, channel, [g[0].contact_id for g in group], limit,
                                      window, tick.now)
            for w, _, _ in group:
                if w.contact_id in free:
                    tick.hold(w, free[w.contact_id])
                    tick.stats.held += 1
            group = [g for g in group if g[0].contact_id not in free]
        fresh = record(conn, tick, node, [w for w, _, _ in group], "queued")
        rows = [{"idempotency_key": idempotency_key(tick.plan.name, w.contact_id,
                                                     w.entry_count, node.id),
                 "source_kind": "journey", "source_name": tick.plan.name,
                 "source_version": tick.plan.version, "step_id": node.id,
                 "variant": variant, "contact_id": w.contact_id, "channel": channel,
                 "to_address": reachable[w.contact_id]}
                for w, variant, _ in group if w.contact_id in fresh]
        if tick.owner is not None:
            tick.leased[channel].extend(ledger.enqueue_leased(conn, rows, owner=tick.owner))
        else:
            tick.new_ids[channel].extend(ledger.enqueue_rows(conn, rows))
        for w, _, _ in group:
            tick.go(w, node.next)


def run_message(conn: Connection, tick: Tick, node: Node, walkers: list[Walker]) -> None:
    msg = node.config["message"]
    _send(conn, tick, node, [(w, None, msg) for w in walkers])  # type: ignore[misc]


def test_key(plan: JourneyPlan, node: Node) -> str:
    return f"journey:{plan.name}:{node.id}"


def run_ab_test(conn: Connection, tick: Tick, node: Node, walkers: list[Walker]) -> None:
    """Deterministic assignment; once a decision is stored, new arrivals get the winner."""
    key = test_key(tick.plan, node)
    ids = [w.contact_id for w in walkers]
    known = dict(conn.execute(select(ab_assignments.c.contact_id, ab_assignments.c.variant)
                              .where(ab_assignments.c.test_key == key,
                                     among(conn, ab_assignments.c.contact_id, ids))).all())
    winner = conn.execute(select(ab_decisions.c.winner).where(
        ab_decisions.c.test_key == key)).scalar()
    variants = {v["id"]: v for v in node.config["variants"]}
    weights = [(v["id"], v["weight"]) for v in node.config["variants"]]
    new_rows, items = [], []
    for w in walkers:
        chosen = known.get(w.contact_id)
        if chosen not in variants:
            chosen = winner if winner in variants else assign_variant(key, w.contact_id, weights)
            new_rows.append({"test_key": key, "contact_id": w.contact_id, "variant": chosen,
                             "phase": "rest" if winner in variants else "test",
                             "assigned_at": tick.now})
        items.append((w, chosen, variants[chosen]["message"]))
    if new_rows:
        stmt = ledger.dialect_insert(conn)(ab_assignments)
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["test_key", "contact_id"]),
                     new_rows)
    _send(conn, tick, node, items)


# --- flow control --------------------------------------------------------------------------

def run_wait(conn: Connection, tick: Tick, node: Node, walkers: list[Walker]) -> None:
    arriving = [w for w in walkers if w.wait_since is None]
    for w in walkers:
        if w.wait_since is not None:  # the wait is over
            tick.go(w, node.next)
    record(conn, tick, node, arriving, "waited")
    for w in arriving:
        if "duration" in node.config:
            due = tick.now + clock.parse_duration(node.config["duration"])
        else:
            due = timing.next_local_time(tick.now, node.config["until"], tick.zone(w))
        w.wait_since = tick.now
        tick.hold(w, due)


def run_wait_for(conn: Connection, tick: Tick, node: Node, walkers: list[Walker]) -> None:
    from reach.db.schema import events

    event = node.config["event"]
    arriving = [w for w in walkers if w.wait_since is None]
    waiting = [w for w in walkers if w.wait_since is not None]
    record(conn, tick, node, arriving, "waiting")
    for w in arriving:
        w.waiting_event, w.wait_since = event, tick.now
        w.wait_deadline = tick.now + clock.parse_duration(node.config["timeout"])
        tick.hold(w, w.wait_deadline)
    if not waiting:
        return
    since = min(w.wait_since for w in waiting)  # type: ignore[type-var]
    seen: dict[int, list[datetime]] = defaultdict(list)
    for cid, at in conn.execute(select(events.c.contact_id, events.c.occurred_at).where(
            among(conn, events.c.contact_id, [w.contact_id for w in waiting]),
            events.c.type == event,
            events.c.occurred_at >= since, events.c.occurred_at <= tick.now)):
        seen[cid].append(clock.as_utc(at))  # type: ignore[arg-type]
    arrived, timed_out = [], []
    for w in waiting:
        if any(t >= clock.as_utc(w.wait_since) for t in seen.get(w.contact_id, [])):  # type: ignore[operator]
            arrived.append(w)
            tick.go(w, node.next)
        elif clock.as_utc(w.wait_deadline) <= tick.now:  # type: ignore[operator]
            timed_out.append(w)
            tick.go(w, node.config["on_timeout"])
        else:
            tick.hold(w, clock.as_utc(w.wait_deadline))  # type: ignore[arg-type]
    set_outcome(conn, tick, node, arrived, "event")
    set_outcome(conn, tick, node, timed_out, "timeout")


def run_branch(conn: Connection, tick: Tick, node: Node, walkers: list[Walker]) -> None:
    remaining = list(walkers)
    for arm in node.config["arms"]:
        if not remaining:
            break
        if arm["if"] is None:
            hits = {w.contact_id for w in remaining}
        else:
            hits = matching(conn, [w.contact_id for w in remaining],
                            compile_branch(tick.plan, arm["if"], tick.now))
        taken = [w for w in remaining if w.contact_id in hits]
        record(conn, tick, node, taken, f"to:{arm['to'] or 'end'}")
        for w in taken:
            tick.go(w, arm["to"])
        remaining = [w for w in remaining if w.contact_id not in hits]
    record(conn, tick, node, remaining, "no_match")
    for w in remaining:
        tick.go(w, node.next)


def run_split(conn: Connection, tick: Tick, node: Node, walkers: list[Walker]) -> None:
    key = test_key(tick.plan, node)
    paths = {p["id"]: p for p in node.config["paths"]}
    weights = [(p["id"], p["percent"]) for p in node.config["paths"]]
    chosen = {w.contact_id: assign_variant(key, w.contact_id, weights) for w in walkers}
    stmt = ledger.dialect_insert(conn)(ab_assignments)
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["test_key", "contact_id"]), [
        {"test_key": key, "contact_id": cid, "variant": v, "phase": "split",
         "assigned_at": tick.now} for cid, v in chosen.items()])
    for path_id, path in paths.items():
        group = [w for w in walkers if chosen[w.contact_id] == path_id]
        record(conn, tick, node, group, f"path:{path_id}")
        for w in group:
            tick.go(w, path["to"])


def run_update(conn: Connection, tick: Tick, node: Node, walkers: list[Walker]) -> None:
    fresh = record(conn, tick, node, walkers, "updated")
    if fresh and conn.dialect.name == "postgresql":
        # One statement: jsonb's || replaces top-level keys as the dict merge below does.
        conn.execute(update(contacts).where(among(conn, contacts.c.id, fresh)).values(
            attributes=func.coalesce(contacts.c.attributes, cast({}, JSONB))
            .op("||")(cast(node.config["attributes"], JSONB)), updated_at=tick.now))
    elif fresh:
        current = dict(conn.execute(select(contacts.c.id, contacts.c.attributes).where(
            among(conn, contacts.c.id, fresh))).all())
        changes = node.config["attributes"]
        conn.execute(
            update(contacts).where(contacts.c.id == bindparam("cid"))
            .values(attributes=bindparam("attrs"), updated_at=tick.now),
            [{"cid": cid, "attrs": {**(attrs or {}), **changes}}
             for cid, attrs in current.items()])
    for w in walkers:
        tick.go(w, node.next)


def run_webhook(conn: Connection, tick: Tick, node: Node, walkers: list[Walker]) -> None:
    fresh = record(conn, tick, node, walkers, "queued")
    rows = [{"idempotency_key": idempotency_key(tick.plan.name, w.contact_id, w.entry_count,
                                                 node.id),
             "source_kind": "journey", "source_name": tick.plan.name,
             "source_version": tick.plan.version, "step_id": node.id, "variant": None,
             "contact_id": w.contact_id, "channel": "webhook",
             "to_address": node.config["url"]} for w in walkers if w.contact_id in fresh]
    tick.new_ids["webhook"].extend(ledger.enqueue_rows(conn, rows))
    for w in walkers:
        tick.go(w, node.next)


def run_exit(conn: Connection, tick: Tick, node: Node, walkers: list[Walker]) -> None:
    record(conn, tick, node, walkers, "exit")
    for w in walkers:
        tick.finish(w, "exited", node.config.get("reason") or "exit")


EXECUTORS: dict[str, Callable[[Connection, Tick, Node, list[Walker]], None]] = {
    "email": run_message, "sms": run_message, "ab_test": run_ab_test, "wait": run_wait,
    "wait_for": run_wait_for, "branch": run_branch, "split": run_split,
    "update": run_update, "webhook": run_webhook, "exit": run_exit,
}
