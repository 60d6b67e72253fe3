"""Decisions of journey ``ab_test`` steps, checked on every tick.

A journey's test has no fixed end: contacts keep arriving. So each tick runs the always-valid
sequential test (mixture SPRT, ``reports.decide.decide_sequential``) on the arms so far,
carrying its state between ticks in ``ab_decisions`` (outcome ``pending``). Once it is
significant — or ``decide_after`` has passed since the first assignment and the fallback
applies — the decision is stored and new arrivals get the winner (``journeys.steps``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, and_, func, select

from campaigns.ledger import dialect_insert
from journeys.plan import JourneyPlan
from reach import clock
from reach.clock import as_utc, parse_duration
from reach.db.schema import ab_assignments, ab_decisions, messages
from reports.abmetrics import arm_results

PENDING = "pending"


def test_key(plan: JourneyPlan, step_id: str) -> str:
    return f"journey:{plan.name}:{step_id}"


def _upsert(engine: Engine, row: dict[str, Any]) -> None:
    with engine.begin() as conn:
        stmt = dialect_insert(conn)(ab_decisions).values(**row)
        stmt = stmt.on_conflict_do_update(
            index_elements=["test_key"],
            set_={k: stmt.excluded[k] for k in ("decided_at", "winner", "outcome", "stats")},
            where=ab_decisions.c.outcome == PENDING)
        conn.execute(stmt)


def decide_tests(engine: Engine, plan: JourneyPlan) -> dict[str, dict[str, Any]]:
    """Look at every undecided ``ab_test`` step of the journey; returns what was decided."""
    from reports.decide import decide_sequential

    decided: dict[str, dict[str, Any]] = {}
    for node in plan.nodes.values():
        if node.kind != "ab_test":
            continue
        key = test_key(plan, node.id)
        with engine.connect() as conn:
            row = conn.execute(select(ab_decisions).where(ab_decisions.c.test_key == key)
                               ).mappings().first()
            first = conn.execute(select(func.min(ab_assignments.c.assigned_at))
                                 .where(ab_assignments.c.test_key == key)).scalar()
        if first is None or (row is not None and row["outcome"] != PENDING):
            continue
        config = node.config
        state = dict((row["stats"] or {}).get("sequential_state") or {}) if row else {}
        deadline = as_utc(first) + parse_duration(config.get("decide_after", "3d"))
        variant_ids = [v["id"] for v in config["variants"]]
        where = and_(messages.c.source_kind == "journey", messages.c.source_name == plan.name,
                     messages.c.step_id == node.id)
        arms = arm_results(engine, where, variant_ids, plan.goal)
        decision = decide_sequential(
            arms, metric=config.get("metric", "clicked"),
            confidence=float(config.get("confidence", 0.95)),
            fallback=config.get("fallback", "send_control"), control_id=variant_ids[0],
            state=state, at_deadline=clock.now() >= deadline)
        final = decision.outcome == "significant" or decision.outcome.startswith("fallback")
        data = decision.to_dict()
        _upsert(engine, {"test_key": key, "decided_at": clock.now(),
                         "winner": decision.winner if final else None,
                         "outcome": decision.outcome if final else PENDING,
                         "stats": {**data, "sequential_state": decision.sequential_state}})
        if final:
            decided[node.id] = {"winner": decision.winner, "outcome": decision.outcome,
                                "reason": decision.reason}
    return decided
