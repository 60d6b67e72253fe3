"""Journey figures: the campaign report's keys for the whole journey, then per step and per
variant of each ``ab_test`` step, with the step's stored A/B decision.

The ledger's figures are computed here, once per journey with GROUP BY; what only the
journey runtime knows (contacts, entries, exits by reason, how many reached each step) comes
from ``journeys.report``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from journeys.report import runtime_figures
from reports.attribution import holdout_lift, resolve_window
from reports.campaign import figures_by_group, latest_plan, rollup, variant_rows
from reports.counts import Scope, concurrent_engine, timeline
from reports.variants import DEFAULT_CONFIDENCE, load_decisions

MESSAGE_KINDS = ("email", "sms", "ab_test")


def journey_report(engine: Engine, name: str, *, within: str | None = None,
                   basis: str | None = None, with_timeline: bool = False,
                   confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Any]:
    """Every figure of one journey, as plain JSON-able data (options as ``campaign_report``)."""
    engine = concurrent_engine(engine)
    plan = latest_plan(engine, "journey", name) or {}
    scope = Scope("journey", name)
    goal = plan.get("goal")
    window = resolve_window(goal, within, basis)
    cost_spec = dict(plan.get("cost") or {})
    fixed = float(cost_spec.get("fixed") or 0)
    groups = figures_by_group(engine, scope.where(), goal, window)
    sent_total = sum(g["sent"] for g in groups.values())
    out: dict[str, Any] = runtime_figures(engine, name, plan)
    runtime_steps = {s["step_id"]: s for s in out.pop("steps")}
    out.update({"name": name, "kind": "journey", "channel": "mixed",
                "version": plan.get("version")})
    total = rollup(list(groups.values()), cost_spec, fixed, sent_total, confidence)
    total.pop("revenue_sumsq", None)
    out.update(total)
    out["goal"], out["window"] = goal, window.to_dict()
    decisions = load_decisions(engine, scope.test_key)
    nodes = plan.get("nodes") or {}
    order = list(runtime_steps)  # the plan's steps in order, then removed ones with records
    order += sorted({s for s, _ in groups if s and s not in runtime_steps})
    steps = []
    for step_id in order:
        kind = (nodes.get(step_id) or {}).get("kind")
        mine = [g for (s, _), g in groups.items() if s == step_id]
        if not mine and kind not in MESSAGE_KINDS and step_id not in runtime_steps:
            continue
        row: dict[str, Any] = {"step_id": step_id, "kind": kind,
                               **runtime_steps.get(step_id, {})}
        if mine or kind in MESSAGE_KINDS:
            fig = rollup(mine, cost_spec, fixed, sent_total, confidence)
            fig.pop("revenue_sumsq", None)
            row.update(fig)
            row["variants"] = (variant_rows(groups, cost_spec, fixed, sent_total, step_id,
                                            confidence) if kind == "ab_test" else [])
            row["decision"] = decisions.get(f"{scope.test_key}:{step_id}")
        steps.append(row)
    out["steps"] = steps
    out["variants"] = []
    out["decision"] = None
    out["holdout"] = (holdout_lift(engine, scope, goal, window, confidence)
                      if plan.get("holdout") else None)
    if with_timeline:
        out["timeline"] = timeline(engine, scope.where())
    return out
