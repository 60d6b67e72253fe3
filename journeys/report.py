"""What only the journey runtime knows: contacts, entries, exits by reason, and per step how
many reached it and with which outcome.

``reports.journey`` lays the ledger's figures (delivery, engagement, conversions, ROI, per
step and per variant, computed once per journey with GROUP BY) over these; the two used to
compute per-step delivery each.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from reach.db.schema import journey_states, journey_steps


def _funnel(engine: Engine, name: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    with engine.connect() as conn:
        reached = dict(conn.execute(
            select(journey_steps.c.step_id, func.count(func.distinct(journey_steps.c.contact_id)))
            .where(journey_steps.c.journey == name).group_by(journey_steps.c.step_id)).all())
        outcomes: dict[str, dict[str, int]] = {}
        for step, outcome, n in conn.execute(
                select(journey_steps.c.step_id, journey_steps.c.outcome, func.count())
                .where(journey_steps.c.journey == name)
                .group_by(journey_steps.c.step_id, journey_steps.c.outcome)):
            outcomes.setdefault(step, {})[outcome or ""] = int(n)
    return {k: int(v) for k, v in reached.items()}, outcomes


def _states(engine: Engine, name: str) -> dict[str, Any]:
    js = journey_states
    with engine.connect() as conn:
        rows = conn.execute(
            select(js.c.status, js.c.exit_reason, func.count(), func.sum(js.c.entry_count))
            .where(js.c.journey == name).group_by(js.c.status, js.c.exit_reason)).all()
    exits: dict[str, int] = {}
    active = contacts = entries = 0
    for status, reason, n, total_entries in rows:
        contacts += int(n)
        entries += int(total_entries or 0)
        if status == "active":
            active += int(n)
        else:
            key = reason or "completed"
            exits[key] = exits.get(key, 0) + int(n)
    return {"contacts": contacts, "entries": entries, "active": active, "exits": exits}


def runtime_figures(engine: Engine, name: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Contacts, entries, active, exits by reason, and ``steps``: one row per step of the
    compiled ``plan`` (in its order; then steps only the records know) with ``reached``
    (distinct contacts) and ``outcomes`` (records by outcome)."""
    out = _states(engine, name)
    reached, outcomes = _funnel(engine, name)
    nodes = plan.get("nodes") or {}
    order = list(plan.get("order") or [])
    order += sorted(s for s in reached if s not in order)
    out["steps"] = [{"step_id": step_id, "kind": (nodes.get(step_id) or {}).get("kind"),
                     "reached": reached.get(step_id, 0), "outcomes": outcomes.get(step_id, {})}
                    for step_id in order]
    return out
