"""Journey figures: the campaign report's keys, plus a funnel per step and exits by reason.

``reports.journey`` renders this; the figures come from the same helpers as campaigns
(``reports.campaign``) with the ledger restricted to the journey's rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, and_, func, select

from reach.db.schema import journey_states, journey_steps, messages
from reports.campaign import (
    _ratio,
    conversions,
    delivery_counts,
    engagement_counts,
    latest_plan,
)


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


def journey_report(engine: Engine, name: str) -> dict[str, Any]:
    """Every figure of one journey, as plain JSON-able data."""
    plan = latest_plan(engine, "journey", name) or {}
    where = and_(messages.c.source_kind == "journey", messages.c.source_name == name)
    out: dict[str, Any] = {"name": name, "kind": "journey", "channel": "mixed",
                           "version": plan.get("version")}
    out.update(delivery_counts(engine, where))
    out.update(engagement_counts(engine, where))
    out.update(conversions(engine, where, plan.get("goal")))
    out["cost"] = 0.0
    out["currency"] = "EUR"
    out["open_rate"] = _ratio(out["opens_unique"], out["delivered"])
    out["human_open_rate"] = _ratio(out["opens_human"], out["delivered"])
    out["ctr"] = _ratio(out["clicks_unique"], out["delivered"])
    out["ctor"] = _ratio(out["clicks_unique"], out["opens_unique"])
    out["roi"] = None
    out["roas"] = None
    out["cpa"] = None
    out.update(_states(engine, name))
    reached, outcomes = _funnel(engine, name)
    nodes = plan.get("nodes", {})
    steps = []
    for step_id in plan.get("order", sorted(reached)):
        step_where = and_(where, messages.c.step_id == step_id)
        row: dict[str, Any] = {"step_id": step_id, "kind": nodes.get(step_id, {}).get("kind"),
                               "reached": reached.get(step_id, 0),
                               "outcomes": outcomes.get(step_id, {})}
        if row["kind"] in ("email", "sms", "ab_test", "webhook"):
            d = delivery_counts(engine, step_where)
            e = engagement_counts(engine, step_where)
            row.update({"sent": d["sent"], "delivered": d["delivered"], "failed": d["failed"],
                        "bounced": d["bounced"], "opens_human": e["opens_human"],
                        "clicks_human": e["clicks_human"], "opens_unique": e["opens_unique"],
                        "clicks_unique": e["clicks_unique"],
                        "unsubscribes": e["unsubscribes"]})
        steps.append(row)
    out["steps"] = steps
    return out
