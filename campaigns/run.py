"""Running a campaign, without Prefect: enqueue the audience, split it into batches, send.

``campaigns.flows`` wraps these functions in a Prefect flow and tasks; tests and the
simulator can call them directly. Every step is safe to repeat: enqueueing inserts only
missing ledger rows, and a batch only sends rows it managed to claim.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, and_, func, insert, select, update

from audiences.compiler import compile_conditions, eligible_clause
from audiences.spec import SegmentSpec
from campaigns import ledger
from campaigns.plan import CampaignPlan, occurrence
from campaigns.sender import send_claimed
from reach import clock
from reach.db.schema import campaign_state, contacts, definitions, messages
from reach.settings import Settings

# Set by the CLI to drive a progress bar: called with the number of rows just finished.
progress_hook: Callable[[int], None] | None = None


@dataclass
class RunSummary:
    campaign: str
    version: str
    occurrence: str
    enqueued: int = 0
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    retried: int = 0
    unknown: int = 0
    status: str = "running"
    reason: str | None = None
    batches: int = 0
    ab: dict[str, Any] = field(default_factory=dict)

    def add(self, other: dict[str, int]) -> None:
        for key in ("sent", "failed", "bounced", "retried"):
            setattr(self, key, getattr(self, key) + other.get(key, 0))


def source_where(plan: CampaignPlan) -> Any:
    """Ledger rows of this campaign (every version and occurrence)."""
    return and_(messages.c.source_kind == "campaign", messages.c.source_name == plan.name)


def audience_where(plan: CampaignPlan) -> Any:
    """The audience: the segment's conditions AND the channel's suppression rules."""
    segments = {k: SegmentSpec.model_validate(v) for k, v in plan.segments.items()}
    clause = compile_conditions(plan.conditions, plan.match, segments=segments)
    return and_(clause, eligible_clause(plan.channel))


def key_prefix(plan: CampaignPlan, occ: str) -> str:
    return f"campaign:{plan.name}:{occ}:"


def record_definition(engine: Engine, plan: CampaignPlan) -> None:
    """Store the plan under its version once; reports and the view route read it back."""
    with engine.begin() as conn:
        exists = conn.execute(
            select(definitions.c.id).where(
                definitions.c.kind == "campaign", definitions.c.name == plan.name,
                definitions.c.version == plan.version)
        ).first()
        if not exists:
            conn.execute(insert(definitions).values(
                kind="campaign", name=plan.name, version=plan.version,
                plan=plan.model_dump(mode="json"), source_file=plan.source_file,
                created_at=clock.now()))


def start(settings: Settings, engine: Engine, plan: CampaignPlan) -> RunSummary:
    """Prepare a run: resume state, settle crashed rows, enqueue what should be sent now."""
    occ = occurrence(plan)
    summary = RunSummary(campaign=plan.name, version=plan.version, occurrence=occ)
    record_definition(engine, plan)
    now = clock.now()
    with engine.begin() as conn:
        state = conn.execute(
            select(campaign_state).where(campaign_state.c.name == plan.name)
        ).mappings().first()
        values = {"version": plan.version, "status": "running", "pause_reason": None,
                  "updated_at": now, "run_started_at": now}
        if state is None:
            conn.execute(insert(campaign_state).values(name=plan.name, started_at=now, **values))
        else:
            # `reach run` resumes a paused campaign: the operator has seen the reason.
            conn.execute(update(campaign_state).where(campaign_state.c.name == plan.name)
                         .values(**values))
        summary.unknown = ledger.recover_stale(conn, source_where(plan),
                                               resend=settings.resend_unknown,
                                               journal_dir=settings.journal_dir)
        if settings.resend_unknown:
            ledger.requeue_unknown(conn, source_where(plan))
    if plan.ab_test:
        from campaigns.abtest import enqueue_ab

        summary.enqueued, summary.ab = enqueue_ab(settings, engine, plan, occ)
    elif plan.holdout:
        from campaigns.abtest import enqueue_plain_with_holdout

        summary.enqueued = enqueue_plain_with_holdout(settings, engine, plan, occ)
    else:
        with engine.begin() as conn:
            ids = select(contacts.c.id).where(audience_where(plan))
            summary.enqueued = ledger.enqueue_select(
                conn, ids, key_prefix=key_prefix(plan, occ), source_kind="campaign",
                source_name=plan.name, source_version=plan.version, channel=plan.channel,
                variant=plan.variants[0].id)
    return summary


def batch_ranges(engine: Engine, plan: CampaignPlan, batch_size: int) -> list[tuple[int, int]]:
    """Keyset ranges of queued ledger ids, ``batch_size`` rows each, one Prefect task each."""
    where = and_(source_where(plan), messages.c.status == ledger.QUEUED)
    numbered = select(
        messages.c.id, func.row_number().over(order_by=messages.c.id).label("rn")
    ).where(where).subquery()
    with engine.connect() as conn:
        starts = [r[0] for r in conn.execute(
            select(numbered.c.id).where((numbered.c.rn - 1) % batch_size == 0)
            .order_by(numbered.c.id))]
        last = conn.execute(select(func.max(messages.c.id)).where(where)).scalar()
    if not starts:
        return []
    ends = [s - 1 for s in starts[1:]] + [int(last)]
    return list(zip(starts, ends, strict=True))


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def send_range(settings: Settings, engine: Engine, plan: CampaignPlan, lo: int, hi: int,
               *, test_to: str | None = None) -> dict[str, Any]:
    """Send every queued row with ledger id in [lo, hi]. Safe to run twice or concurrently."""
    from reach.errors import ReachError

    where = and_(source_where(plan), messages.c.id >= lo, messages.c.id <= hi)
    try:
        return send_claimed(settings, engine, plan, where, owner=worker_id(),
                            progress=progress_hook)
    except ReachError as exc:
        pause(engine, plan, f"paused: {exc.message}; fix the transport settings, then "
                            "`reach run` resumes")
        raise


def pause(engine: Engine, plan: CampaignPlan, reason: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(campaign_state).where(campaign_state.c.name == plan.name)
                     .values(status="paused", pause_reason=reason, updated_at=clock.now()))


def pause_if_failing(settings: Settings, engine: Engine, plan: CampaignPlan) -> str | None:
    """Pause the campaign when too many recent attempts failed; returns the reason."""
    with engine.begin() as conn:
        since = conn.execute(select(campaign_state.c.run_started_at)
                             .where(campaign_state.c.name == plan.name)).scalar()
        rate, total = ledger.recent_error_rate(conn, source_where(plan), settings.error_window,
                                               since)
        if total < min(settings.error_window, 20) or rate <= settings.error_threshold:
            return None
    reason = (f"paused: {rate:.0%} of the last {total} attempts failed (threshold "
              f"{settings.error_threshold:.0%}); check the transport, then `reach run` resumes")
    pause(engine, plan, reason)
    return reason


def campaign_status(engine: Engine, name: str) -> tuple[str | None, str | None]:
    with engine.connect() as conn:
        row = conn.execute(select(campaign_state.c.status, campaign_state.c.pause_reason)
                           .where(campaign_state.c.name == name)).first()
    return (row[0], row[1]) if row else (None, None)


def finish(engine: Engine, plan: CampaignPlan, summary: RunSummary) -> RunSummary:
    """Settle the campaign's state after the batches ran."""
    status, reason = campaign_status(engine, plan.name)
    with engine.begin() as conn:
        counts = ledger.status_counts(conn, source_where(plan))
        if status != "paused":
            waiting = bool(plan.ab_test) and not summary.ab.get("rest_enqueued")
            queued = counts.get(ledger.QUEUED, 0)
            status = "waiting_ab" if waiting else ("running" if queued else "done")
            conn.execute(update(campaign_state).where(campaign_state.c.name == plan.name)
                         .values(status=status, updated_at=clock.now(),
                                 finished_at=clock.now() if status == "done" else None))
    summary.status, summary.reason = status or "done", reason
    summary.unknown = counts.get(ledger.UNKNOWN, 0)
    return summary


def run_plan(settings: Settings, engine: Engine, plan: CampaignPlan) -> RunSummary:
    """The whole run in this process, without Prefect (the tick and the simulator use it;
    ``campaigns.flows.run_campaign`` is the same sequence as Prefect tasks)."""
    summary = start(settings, engine, plan)
    for lo, hi in batch_ranges(engine, plan, settings.batch_size):
        if campaign_status(engine, plan.name)[0] == "paused":
            break
        summary.add(send_range(settings, engine, plan, lo, hi))
        summary.batches += 1
        if pause_if_failing(settings, engine, plan):
            break
    return finish(engine, plan, summary)
