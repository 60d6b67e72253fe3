"""The set-based part of a tick: who enters, who leaves, who wakes up.

Everything here is one SQL statement per rule over all of a journey's contacts, so it costs
the same for ten contacts or a million and is safe when two ticks run at once (inserts skip
existing ``(journey, contact)`` rows; updates re-check their conditions on the row).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    exists,
    func,
    literal,
    select,
    text,
    update,
)

from audiences.compiler import compile_conditions
from audiences.spec import SegmentSpec
from campaigns.ledger import dialect_insert
from journeys.plan import JourneyPlan
from reach import clock
from reach.db.bulk import among
from reach.db.schema import contacts, definitions, events, journey_states
from reach.errors import ReachError

js = journey_states
ACTIVE, DONE, EXITED = "active", "done", "exited"
# Marks a finished state whose contact has since left the entry segment: with
# `re_entry: always` a contact re-enters when it *joins* the segment again, not on every tick.
LEFT = "(left-segment)"


def record_definition(engine: Engine, plan: JourneyPlan) -> None:
    """Store the plan under its version once (view in browser and reports read it back)."""
    with engine.begin() as conn:
        stmt = dialect_insert(conn)(definitions).values(
            kind="journey", name=plan.name, version=plan.version,
            plan=plan.model_dump(mode="json"), source_file=plan.source_file,
            created_at=clock.now())
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["kind", "name", "version"]))


def live_since(conn: Connection, name: str) -> datetime:
    """When the journey first ran (its first stored version): event entry counts events
    from then on, so launching a journey does not enrol everybody's past events."""
    first = conn.execute(select(func.min(definitions.c.created_at)).where(
        definitions.c.kind == "journey", definitions.c.name == name)).scalar()
    return clock.as_utc(first) or clock.now()  # type: ignore[return-value]


def segment_clause(plan: JourneyPlan, now: datetime) -> ColumnElement[bool]:
    """Contacts in the entry segment (erased contacts never enter)."""
    segments = {k: SegmentSpec.model_validate(v) for k, v in plan.segments.items()}
    name = plan.entry["segment"]
    if name not in segments:
        raise ReachError("R202", f"segment {name!r} of journey {plan.name!r} not found",
                         "run `reach validate`")
    clause = compile_conditions([SegmentSpec.model_validate(
        {"segment": "entry", "conditions": [{"segment": name}]}).conditions[0]],
        segments=segments, now=now)
    return and_(clause, contacts.c.erased_at.is_(None))


def _new_state_values(plan: JourneyPlan, now: datetime) -> dict[str, Any]:
    return {"journey": plan.name, "version": plan.version, "step_id": plan.first,
            "status": ACTIVE, "due_at": now, "entry_count": 1, "entered_at": now}


def _insert_new(conn: Connection, plan: JourneyPlan, ids: Any, now: datetime) -> int:
    """Insert a state for every selected contact id that has none in this journey."""
    values = _new_state_values(plan, now)
    sub = ids.subquery()
    cid = sub.c[0]
    src = select(*(literal(v).label(k) for k, v in values.items()), cid.label("contact_id"))
    src = src.where(~exists(select(js.c.id).where(js.c.journey == plan.name,
                                                 js.c.contact_id == cid)))
    cols = [*values, "contact_id"]
    stmt = dialect_insert(conn)(js).from_select(cols, src)
    stmt = stmt.on_conflict_do_nothing(index_elements=["journey", "contact_id"])
    # Count returned ids (a driver's rowcount for INSERT … SELECT may be -1), without
    # holding them: fetching every new id cost ~90 bytes of Python per entrant at the peak.
    if conn.dialect.name == "postgresql":
        inserted = stmt.returning(js.c.id).cte("inserted")
        return int(conn.execute(select(func.count()).select_from(inserted)).scalar_one())
    return sum(1 for _ in conn.execute(stmt.returning(js.c.id)))


def _reenter(conn: Connection, plan: JourneyPlan, where: ColumnElement[bool],
             now: datetime) -> int:
    """Start a finished state over: next entry, first step, fresh clocks."""
    stmt = (update(js).where(js.c.journey == plan.name, js.c.status.in_([DONE, EXITED]), where)
            .values(status=ACTIVE, step_id=plan.first, version=plan.version, due_at=now,
                    entry_count=js.c.entry_count + 1, entered_at=now, exited_at=None,
                    exit_reason=None, waiting_event=None, wait_since=None, wait_deadline=None,
                    lease_owner=None, lease_until=None))
    return conn.execute(stmt).rowcount or 0


def _serialise_enrolment(conn: Connection, journey: str) -> None:
    """On PostgreSQL, one enrolment of a journey at a time (SQLite serialises all writers).

    Without it a second tick's INSERT … SELECT, whose snapshot predates the first tick's
    commit, meets each of the first tick's rows in the unique index and waits on every
    later transaction that touches them: it sat behind the whole of the first tick's claim
    loop. Waiting here instead costs one enrolment, after which the NOT EXISTS sees them.
    """
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha1(f"enrol:{journey}".encode()).digest()[:8],
                             "big", signed=True)
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def enrol(engine: Engine, plan: JourneyPlan, now: datetime) -> tuple[int, int]:
    """Enrol new entrants and re-entrants; returns (new, re-entered)."""
    entry = plan.entry
    rule = entry.get("re_entry", "never")
    after = clock.parse_duration(rule["after"]) if isinstance(rule, dict) else None
    with engine.begin() as conn:
        _serialise_enrolment(conn, plan.name)
        if entry.get("event"):
            return _enrol_event(conn, plan, entry["event"], rule, after, now)
        members = segment_clause(plan, now)
        in_segment = js.c.contact_id.in_(select(contacts.c.id).where(members))
        if entry.get("schedule"):
            from croniter import croniter

            # The latest occurrence at or before now (croniter's get_prev is strictly before).
            occurrence = clock.as_utc(croniter(entry["schedule"], now + timedelta(seconds=1))
                                      .get_prev(datetime))
            if occurrence is None or occurrence < live_since(conn, plan.name):
                return 0, 0
            new = _insert_new(conn, plan, select(contacts.c.id).where(members), now)
            again = 0
            if rule != "never":
                cond = [in_segment, js.c.entered_at < occurrence]
                if after is not None:
                    cond.append(js.c.entered_at <= now - after)
                again = _reenter(conn, plan, and_(*cond), now)
            return new, again
        new = _insert_new(conn, plan, select(contacts.c.id).where(members), now)
        again = 0
        if rule == "always":
            # Remember who left the segment since finishing; they re-enter when back.
            conn.execute(update(js).where(
                js.c.journey == plan.name, js.c.status.in_([DONE, EXITED]),
                js.c.waiting_event.is_(None), ~in_segment).values(waiting_event=LEFT))
            again = _reenter(conn, plan, and_(in_segment, js.c.waiting_event == LEFT), now)
        elif after is not None:
            again = _reenter(conn, plan, and_(in_segment, js.c.entered_at <= now - after), now)
        return new, again


def _enrol_event(conn: Connection, plan: JourneyPlan, event: str, rule: Any, after: Any,
                 now: datetime) -> tuple[int, int]:
    since = live_since(conn, plan.name)
    happened = and_(events.c.type == event, events.c.occurred_at >= since,
                    events.c.occurred_at <= now)
    new = _insert_new(conn, plan, select(events.c.contact_id).where(happened).distinct(), now)
    if rule == "never":
        return new, 0
    # An event after the previous entry ended (and, with `after`, after the cool-down).
    later = events.c.occurred_at > js.c.exited_at
    cond = [later]
    if after is not None:
        cond += [js.c.entered_at <= now - after]
    again = _reenter(conn, plan, exists(select(events.c.id).where(
        happened, events.c.contact_id == js.c.contact_id, *cond)), now)
    return new, again


def exit_removed_steps(engine: Engine, plan: JourneyPlan, now: datetime) -> int:
    """Contacts whose step no longer exists in this version leave with ``step_removed``."""
    with engine.begin() as conn:
        return conn.execute(update(js).where(
            js.c.journey == plan.name, js.c.status == ACTIVE, js.c.step_id.is_not(None),
            js.c.step_id.not_in(list(plan.nodes)))
            .values(status=EXITED, exit_reason="step_removed", exited_at=now, due_at=None,
                    lease_owner=None, lease_until=None)).rowcount or 0


def exit_on_goal(engine: Engine, plan: JourneyPlan, now: datetime) -> int:
    """With ``exit_on_goal``: contacts whose goal event came after they entered (within the
    goal's window) leave with ``goal``, waiting or not."""
    goal = plan.goal
    if not plan.exit_on_goal or not goal:
        return 0
    within = clock.parse_duration(goal["within"]) if goal.get("within") else None
    with engine.begin() as conn:
        rows = conn.execute(
            select(js.c.id, js.c.entered_at, func.min(events.c.occurred_at))
            .join(events, and_(events.c.contact_id == js.c.contact_id,
                               events.c.type == goal["event"],
                               events.c.occurred_at >= js.c.entered_at,
                               events.c.occurred_at <= now))
            .where(js.c.journey == plan.name, js.c.status == ACTIVE)
            .group_by(js.c.id, js.c.entered_at)).all()
        ids = [r[0] for r in rows if within is None
               or clock.as_utc(r[2]) <= clock.as_utc(r[1]) + within]  # type: ignore[operator]
        if not ids:
            return 0
        return conn.execute(update(js).where(among(conn, js.c.id, ids),
                                             js.c.status == ACTIVE).values(
            status=EXITED, exit_reason="goal", exited_at=now, due_at=None,
            lease_owner=None, lease_until=None)).rowcount or 0


def wake_waiters(engine: Engine, plan: JourneyPlan, now: datetime) -> int:
    """Contacts waiting for an event that has arrived become due now."""
    with engine.begin() as conn:
        arrived = exists(select(events.c.id).where(
            events.c.contact_id == js.c.contact_id, events.c.type == js.c.waiting_event,
            events.c.occurred_at >= js.c.wait_since, events.c.occurred_at <= now))
        return conn.execute(update(js).where(
            js.c.journey == plan.name, js.c.status == ACTIVE, js.c.waiting_event.is_not(None),
            js.c.due_at > now, arrived).values(due_at=now)).rowcount or 0
