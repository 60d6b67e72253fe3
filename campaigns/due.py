"""What `reach tick` does for campaigns: scheduled sends that are due, A/B decisions whose
time has come (then the send to the rest), and retries whose backoff has passed.

A campaign without ``schedule:`` runs only on demand (``reach run``); the tick still
finishes what such a run left: A/B decisions and retries.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, and_, func, select

from campaigns import ledger
from campaigns.plan import CampaignPlan, _is_cron, compile_campaign, occurrence
from reach import clock
from reach.clock import parse_instant
from reach.db.schema import campaign_state, messages
from reach.project import Project
from reach.settings import Settings


def is_due(engine: Engine, plan: CampaignPlan, *, start_scheduled: bool = True) -> str | None:
    """Why the campaign should run now, or None."""
    with engine.connect() as conn:
        state = conn.execute(select(campaign_state).where(campaign_state.c.name == plan.name)
                             ).mappings().first()
        if state and state["status"] == "paused":
            return None  # an operator must look at the reason and `reach run` it
        if plan.schedule and start_scheduled:
            if _is_cron(plan.schedule):
                prefix = f"campaign:{plan.name}:{occurrence(plan)}:"
                started = conn.execute(select(func.count()).where(
                    messages.c.source_name == plan.name,
                    messages.c.idempotency_key.like(prefix + "%"))).scalar()
                if not started:
                    return f"scheduled occurrence {occurrence(plan)}"
            elif state is None and parse_instant(plan.schedule) <= clock.now():
                return f"scheduled for {plan.schedule}"
        if state is None:
            return None
        if state["status"] == "waiting_ab":
            from campaigns.abtest import decide_due

            return "A/B decision due" if decide_due(engine, plan) else None
        retry = conn.execute(select(func.count()).where(and_(
            messages.c.source_kind == "campaign", messages.c.source_name == plan.name,
            messages.c.status == ledger.QUEUED))).scalar()
        return f"{retry} message(s) to retry" if retry else None


def due_campaigns(project: Project, engine: Engine) -> list[tuple[CampaignPlan, str]]:
    out = []
    start_scheduled = project.settings.tick_starts_scheduled
    for name in project.campaigns:
        plan = compile_campaign(project, name)
        reason = is_due(engine, plan, start_scheduled=start_scheduled)
        if reason:
            out.append((plan, reason))
    return out


def tick_campaigns(settings: Settings, engine: Engine,
                   project: Project | None = None) -> dict[str, Any]:
    """Run every campaign that is due now; returns a summary per campaign run."""
    from campaigns.run import run_plan
    from reach.project import load_project

    project = project or load_project(settings)
    results: dict[str, Any] = {}
    for plan, reason in due_campaigns(project, engine):
        summary = run_plan(settings, engine, plan)
        results[plan.name] = {"reason": reason, **summary.__dict__}
    return results
