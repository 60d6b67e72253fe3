"""``reach simulate``: the real runtime on a throw-away SQLite copy, on a virtual clock.

The same :func:`journeys.runtime.tick_journey` as ``reach tick`` runs once per virtual
``every`` between ``start`` and ``end``; transports are outboxes inside the temporary
folder, so nothing leaves the machine. Events in the events file happen when the virtual
clock reaches their ``occurred_at``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select

from journeys.plan import JourneyPlan
from journeys.runtime import tick_journey
from reach import clock
from reach.db.schema import contacts, events, journey_states, journey_steps, messages
from reach.settings import Settings


@contextmanager
def _env_now(at: datetime) -> Iterator[None]:
    old = os.environ.get("REACH_NOW")
    os.environ["REACH_NOW"] = at.isoformat()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("REACH_NOW", None)
        else:
            os.environ["REACH_NOW"] = old


def sandbox_settings(settings: Settings, folder: Path) -> Settings:
    """The project's settings pointed at a temporary database and outboxes."""
    update: dict[str, Any] = {"database_url": f"sqlite:///{folder / 'simulation.db'}",
                              "outbox_dir": folder / "outbox", "email_transport": "outbox",
                              "sms_transport": "outbox"}
    if "webhook_transport" in Settings.model_fields:
        update["webhook_transport"] = "outbox"
    return settings.model_copy(update=update)


def _copy_project_data(source_url: str, target: Engine) -> None:
    """Contacts and events of the project's database, copied in chunks."""
    from reach.db import connect

    source = connect(source_url)
    for table in (contacts, events):
        with source.connect() as src, target.begin() as dst:
            chunk: list[dict[str, Any]] = []
            for row in src.execute(select(table)).mappings():
                chunk.append(dict(row))
                if len(chunk) >= 2000:
                    dst.execute(insert(table), chunk)
                    chunk = []
            if chunk:
                dst.execute(insert(table), chunk)


def simulate_journey(settings: Settings, plan: JourneyPlan, folder: Path, *,
                     contacts_file: Path | None, events_file: Path | None, start: datetime,
                     end: datetime, every: timedelta) -> dict[str, Any]:
    """Walk the journey from ``start`` to ``end``; return what happened, for printing."""
    from audiences.contacts import import_contacts
    from audiences.events import import_events
    from reach.db import connect

    sim = sandbox_settings(settings, folder)
    eng = connect(sim.resolved_database_url)
    rejected: list[str] = []
    # Importers write from a worker thread, which does not see a context-local clock.
    with clock.frozen(start), _env_now(start):
        if contacts_file is not None:
            report = import_contacts(eng, contacts_file)
            rejected += [f"contacts line {r.line}: {r.reason}" for r in report.rejected]
        else:
            _copy_project_data(settings.resolved_database_url, eng)
        if events_file is not None:
            report = import_events(eng, events_file)
            rejected += [f"events line {r.line}: {r.reason}" for r in report.rejected]
    ticks, at = 0, start
    while at <= end:
        with clock.frozen(at):
            tick_journey(sim, eng, plan, owner="simulation", batch_size=sim.batch_size)
        ticks += 1
        at += every
    result = _summary(eng, plan, start, end)
    result.update({"ticks": ticks, "rejected": rejected})
    eng.dispose()
    return result


def _summary(eng: Engine, plan: JourneyPlan, start: datetime, end: datetime) -> dict[str, Any]:
    with eng.connect() as conn:
        sent = conn.execute(
            select(messages.c.sent_at, messages.c.created_at, messages.c.step_id,
                   messages.c.variant, messages.c.channel, messages.c.status,
                   contacts.c.email, contacts.c.phone, contacts.c.external_id, contacts.c.id)
            .join(contacts, contacts.c.id == messages.c.contact_id)
            .where(messages.c.source_kind == "journey", messages.c.source_name == plan.name)
            .order_by(messages.c.created_at, messages.c.id)).all()
        reached = {}
        for step_id, cid in conn.execute(select(journey_steps.c.step_id,
                                                journey_steps.c.contact_id)
                                         .where(journey_steps.c.journey == plan.name)):
            reached.setdefault(step_id, set()).add(cid)
        states = conn.execute(select(journey_states).where(
            journey_states.c.journey == plan.name)).mappings().all()
        goal_reached = 0
        if plan.goal:
            within = clock.parse_duration(plan.goal["within"]) if plan.goal.get("within") \
                else None
            for st in states:
                entered = clock.as_utc(st["entered_at"])
                hits = conn.execute(select(events.c.occurred_at).where(
                    events.c.contact_id == st["contact_id"], events.c.type == plan.goal["event"],
                    events.c.occurred_at >= entered, events.c.occurred_at <= end)).all()
                if any(within is None or clock.as_utc(h[0]) <= entered + within  # type: ignore[operator]
                       for h in hits):
                    goal_reached += 1
    exits: dict[str, int] = {}
    for st in states:
        if st["status"] != "active":
            key = st["exit_reason"] or "completed"
            exits[key] = exits.get(key, 0) + 1
    return {
        "journey": plan.name, "version": plan.version, "start": start, "end": end,
        "messages": [{"at": clock.as_utc(r.sent_at or r.created_at),
                      "contact": r.email or r.phone or r.external_id or r.id,
                      "step": r.step_id, "variant": r.variant, "channel": r.channel,
                      "status": r.status} for r in sent],
        "steps": {s: len(reached.get(s, ())) for s in plan.order},
        "entered": len(states), "goal_reached": goal_reached, "exits": exits,
        "active": sum(1 for st in states if st["status"] == "active"),
    }
