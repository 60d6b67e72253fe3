"""Sharing one campaign between workers: batch runs, a cross-worker rate limit, retry rules.

A Prefect flow run executes on one worker, so a campaign spreads over several workers only
if its batches are flow runs of their own. The ``campaign-run`` flow (a deployment run)
enqueues the audience, then creates runs of the ``campaign-batch`` deployment, one per group
of keyset ranges, which any worker of the pool picks up; it polls them and settles the
campaign. Each batch claims its ledger rows, so a batch run twice never double-sends.

Without a Prefect server (ephemeral mode, ``reach run``) nothing here talks to the API:
``campaigns.flows`` runs the batch tasks in its own process.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, and_, func, select

from campaigns import ledger
from campaigns import run as runner
from campaigns.channels.base import PermanentSendError, SendError
from campaigns.sender import CHUNK, send_claimed
from reach import clock
from reach.db.schema import messages
from reach.errors import ReachError, ValidationFailed
from reach.settings import Settings

BATCH_DEPLOYMENT = "campaign-batch/campaign-batch"
ARTIFACT_DESCRIPTION = "reach campaign batch"
FINAL_OK = "COMPLETED"


# Retry rules -----------------------------------------------------------------------------
def is_transient(exc: BaseException | None) -> bool:
    """Whether Prefect should retry a batch task that raised ``exc``.

    Transient: the database or the provider was unreachable for a moment (connection drops,
    timeouts, SMTP 4xx / HTTP 429 / 5xx surfacing as :class:`TransientSendError`). Terminal:
    configuration errors (bad password, unknown transport), invalid project files and
    permanent send errors; per-message terminal outcomes are already in the ledger.
    """
    if exc is None or isinstance(exc, ReachError | ValidationFailed | PermanentSendError):
        return False
    if isinstance(exc, SendError):
        return bool(exc.transient) and not getattr(exc, "stop_run", False)
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, DBAPIError):
        return isinstance(exc, OperationalError) or bool(exc.connection_invalidated)
    return isinstance(exc, OSError | TimeoutError | ConnectionError)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only :func:`is_transient` failures."""
    data = getattr(state, "data", None)
    return is_transient(data if isinstance(data, BaseException) else None)


# Who ran a batch -------------------------------------------------------------------------
def worker_label() -> str:
    """``host:pid`` of the Prefect worker that started this process.

    A process worker starts each flow run as its child, so the parent pid names the worker;
    ``REACH_WORKER_LABEL`` overrides it (containers where every worker is pid 1).
    """
    return os.environ.get("REACH_WORKER_LABEL") or f"{socket.gethostname()}:{os.getppid()}"


def on_server() -> bool:
    """True when flows report to a Prefect server (``PREFECT_API_URL``), not ephemeral mode."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


# Cross-worker rate limit -----------------------------------------------------------------
def limit_name(channel: str) -> str:
    """The Prefect global rate limit that every worker's batches of ``channel`` share."""
    return f"reach-{channel}"


def shared_limit(channel: str) -> int | None:
    """Slots of the channel's global rate limit on the server, or None when there is none."""
    if not on_server():
        return None
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            found = client.read_global_concurrency_limit_by_name(limit_name(channel))
        except ObjectNotFound:
            return None
    if not found.active or not found.slot_decay_per_second:
        return None
    return int(found.limit)


def _due_in_range(engine: Engine, plan: Any, lo: int, hi: int, most: int) -> int:
    """How many rows the next claim in [lo, hi] would take (at most ``most``)."""
    now = clock.now()
    due = and_(runner.source_where(plan), messages.c.id >= lo, messages.c.id <= hi,
               messages.c.status == ledger.QUEUED,
               (messages.c.next_attempt_at.is_(None)) | (messages.c.next_attempt_at <= now))
    inner = select(messages.c.id).where(due).limit(most).subquery()
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(inner)).scalar() or 0)


def send_range_shared(settings: Settings, engine: Engine, plan: Any, lo: int, hi: int,
                      slots: int | None) -> dict[str, int]:
    """Send the queued rows in [lo, hi]; with ``slots``, under the channel's global limit.

    Each chunk first takes as many slots of the Prefect rate limit as it has rows and is
    no larger than the limit's bucket (one second of the rate, at most the sender's claim
    size of 100), so all workers together stay under the provider's rate and burst by at
    most a second's worth (paced further by the messenger's own ``max_per_second``).
    """
    if not slots:
        return runner.send_range(settings, engine, plan, lo, hi)
    from prefect.concurrency.sync import rate_limit

    where = and_(runner.source_where(plan), messages.c.id >= lo, messages.c.id <= hi)
    totals = {"sent": 0, "failed": 0, "bounced": 0, "retried": 0}
    owner = runner.worker_id()
    while True:
        n = _due_in_range(engine, plan, lo, hi, min(CHUNK, slots))
        if n == 0 or runner.campaign_status(engine, plan.name)[0] == "paused":
            return totals
        rate_limit(limit_name(plan.channel), occupy=n)
        # One claim of exactly the n rows paid for, then back here for the next slots.
        counts = send_claimed(settings, engine, plan, where, owner=owner, limit=n, chunk=n,
                              progress=runner.progress_hook)
        for key in totals:
            totals[key] += counts.get(key, 0)


# Fan-out over the campaign-batch deployment ----------------------------------------------
def batch_deployment_id() -> Any:
    """The ``campaign-batch`` deployment's id when this run can fan out, else None.

    Fan-out needs a server, a parent that itself runs from a deployment (so a worker pool
    exists) and the batch deployment.
    """
    from prefect.runtime import deployment

    if not on_server() or not deployment.id:
        return None
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(BATCH_DEPLOYMENT).id
        except ObjectNotFound:
            return None


def group_ranges(ranges: Sequence[Sequence[int]], runs: int) -> list[list[list[int]]]:
    """Split keyset ranges into ``runs`` contiguous groups of near-equal size."""
    items = [[int(lo), int(hi)] for lo, hi in ranges]
    runs = max(1, min(runs, len(items)))
    size, extra = divmod(len(items), runs)
    out, at = [], 0
    for i in range(runs):
        take = size + (1 if i < extra else 0)
        out.append(items[at:at + take])
        at += take
    return [g for g in out if g]


def dispatch(deployment_id: Any, project_dir: str, campaign: str,
             groups: list[list[list[int]]]) -> list[Any]:
    """Create one ``campaign-batch`` flow run per group; returns their ids (no waiting)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    ids = []
    with get_client(sync_client=True) as client:
        for group in groups:
            run = client.create_flow_run_from_deployment(
                deployment_id,
                parameters={"project_dir": project_dir, "campaign": campaign, "ranges": group},
                name=f"{campaign} {group[0][0]}-{group[-1][1]}",
                tags=["reach", f"campaign:{campaign}", f"parent:{flow_run.id}"],
            )
            ids.append(run.id)
    return ids


def wait_for(ids: Sequence[Any], *, timeout: float, poll: float = 1.0,
             on_poll: Callable[[], None] | None = None) -> dict[Any, str]:
    """Poll flow runs until all are final or ``timeout`` passes; returns id → state type."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    states: dict[Any, str] = {}
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))),
                limit=len(ids) + 1)
            states = {r.id: (r.state.type.value if r.state else "PENDING") for r in runs}
            finals = [r for r in runs if r.state and r.state.is_final()]
            if len(finals) == len(ids) or time.monotonic() > deadline:
                return states
            if on_poll:
                on_poll()
            time.sleep(poll)


def batch_reports(ids: Sequence[Any]) -> list[dict[str, Any]]:
    """What each batch run reported (its table artifact): counts, range and worker."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    if not ids:
        return []
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=list(ids))))
    rows: list[dict[str, Any]] = []
    for artifact in artifacts:
        if artifact.description != ARTIFACT_DESCRIPTION:
            continue
        data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        rows.extend(dict(row, flow_run_id=str(artifact.flow_run_id)) for row in data or [])
    return rows


def report_batches(results: list[dict[str, Any]]) -> None:
    """Record a batch run's results as a table artifact the parent (and the UI) reads."""
    from prefect.artifacts import create_table_artifact

    keep = ("lo", "hi", "sent", "failed", "bounced", "retried", "skipped", "paused", "worker")
    counts = ("sent", "failed", "bounced", "retried")
    table = [{k: (r.get(k) or 0) if k in counts else r.get(k) for k in keep} for r in results]
    create_table_artifact(table=table, description=ARTIFACT_DESCRIPTION)
