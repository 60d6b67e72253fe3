"""The campaign as Prefect flows: thin orchestration over ``campaigns.run``.

One generic flow interprets the compiled plan (a flow built at run time cannot be deployed);
sends are ``send-batch`` tasks over keyset ranges of the ledger, and a retried batch never
double-sends (it only sends rows it claims).

Two ways to run:

* in-process (``reach run``, ``reach demo``, the ephemeral default): ``run_campaign`` runs
  every batch task itself, in order, and the CLI's progress bar follows them;
* from the ``campaign-run`` deployment on a Prefect server: ``run_campaign`` enqueues, then
  fans the ranges out as runs of the ``campaign-batch`` deployment (``run_batches``) that
  any worker of the pool picks up, waits for them, re-dispatches what a lost worker left
  queued, and settles the campaign (see ``campaigns.fanout`` and docs/scaling.md).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from campaigns import fanout
from campaigns import run as runner


def _context(project_dir: str) -> tuple[Any, Any]:
    from reach.db import connect
    from reach.settings import load_settings

    settings = load_settings(project_dir)
    return settings, connect(settings.resolved_database_url)


def _plan(settings: Any, campaign: str) -> Any:
    from campaigns.plan import compile_campaign
    from reach.errors import ValidationFailed
    from reach.project import load_project

    project = load_project(settings)
    found = project.find(campaign)
    if not project.ok or found is None or found[0] != "campaign":
        raise ValidationFailed(project.diagnostics)
    return compile_campaign(project, found[1].spec.campaign)


@task(name="enqueue-audience", cache_policy=NO_CACHE)
def enqueue_audience(project_dir: str, campaign: str) -> dict[str, Any]:
    """Start the run (resume state, settle crashed rows, enqueue) and list the batch ranges."""
    settings, engine = _context(project_dir)
    plan = _plan(settings, campaign)
    summary = runner.start(settings, engine, plan)
    ranges = runner.batch_ranges(engine, plan, settings.batch_size)
    return {"summary": summary.__dict__, "ranges": ranges}


# Transient failures of the whole task (database or provider unreachable) are retried with
# exponential backoff and full jitter; terminal ones (configuration, invalid files) never are.
# Per-message outcomes never raise: the ledger records them (retry rows get their own backoff).
@task(name="send-batch", retries=4, retry_delay_seconds=exponential_backoff(backoff_factor=5),
      retry_jitter_factor=1, retry_condition_fn=fanout.retry_transient, cache_policy=NO_CACHE)
def send_batch(project_dir: str, campaign: str, lo: int, hi: int) -> dict[str, Any]:
    """Send the queued rows with ledger id in [lo, hi]; pause the campaign if failing."""
    settings, engine = _context(project_dir)
    plan = _plan(settings, campaign)
    base = {"lo": lo, "hi": hi, "worker": fanout.worker_label()}
    status, _ = runner.campaign_status(engine, plan.name)
    if status == "paused":
        return {**base, "skipped": True}
    counts = fanout.send_range_shared(settings, engine, plan, lo, hi,
                                      fanout.shared_limit(plan.channel))
    reason = runner.pause_if_failing(settings, engine, plan)
    return {**base, **counts, "paused": reason}


@task(name="finish-run", cache_policy=NO_CACHE)
def finish_run(project_dir: str, campaign: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Settle the campaign's state (done, running, waiting for A/B, paused)."""
    settings, engine = _context(project_dir)
    plan = _plan(settings, campaign)
    done = runner.finish(engine, plan, runner.RunSummary(**summary))
    return done.__dict__


def _run_local(project_dir: str, campaign: str, ranges: list[Any],
               summary: runner.RunSummary) -> None:
    for lo, hi in ranges:
        result = send_batch.with_options(name=f"send-batch {lo}-{hi}")(
            project_dir, campaign, lo, hi)
        summary.batches += 1
        summary.add(result)
        if result.get("paused") or result.get("skipped"):
            break


def _run_distributed(deployment_id: Any, project_dir: str, campaign: str, ranges: list[Any],
                     summary: runner.RunSummary, batch_runs: int, max_rounds: int,
                     wait_timeout: float) -> dict[str, Any]:
    """Fan the ranges out as batch runs; re-dispatch rows a crashed run left queued."""
    logger = get_run_logger()
    settings, engine = _context(project_dir)
    plan = _plan(settings, campaign)
    info: dict[str, Any] = {"batch_runs": [], "workers": {}, "lost": []}
    rounds = 0
    while ranges and rounds < max_rounds:
        rounds += 1
        groups = fanout.group_ranges(ranges, batch_runs or min(len(ranges), 8))
        ids = fanout.dispatch(deployment_id, project_dir, campaign, groups)
        logger.info("round %d: %d batch run(s) for %d range(s)", rounds, len(ids), len(ranges))
        states = fanout.wait_for(ids, timeout=wait_timeout)
        for row in fanout.batch_reports(ids):
            summary.batches += 1
            summary.add(row)
            info["workers"][row["worker"]] = info["workers"].get(row["worker"], 0) + 1
        info["batch_runs"] += [{"id": str(i), "state": s} for i, s in states.items()]
        lost = [str(i) for i, s in states.items() if s != fanout.FINAL_OK]
        info["lost"] += lost
        if not lost or runner.campaign_status(engine, plan.name)[0] == "paused":
            break
        # A worker died or a run failed: whatever it had not claimed is still queued. Rows
        # it left in `sending` stay leased (their fate is unknown), so nothing is resent.
        ranges = runner.batch_ranges(engine, plan, settings.batch_size)
        logger.warning("%d batch run(s) did not complete; re-dispatching %d range(s)",
                       len(lost), len(ranges))
    info["rounds"] = rounds
    return info


@flow(name="campaign-run", flow_run_name="{campaign}", log_prints=False)
def run_campaign(project_dir: str, campaign: str, batch_runs: int = 0, max_rounds: int = 3,
                 wait_timeout: float = 6 * 3600.0) -> dict[str, Any]:
    """Enqueue the campaign's audience and send it in batches; returns the run summary.

    From a deployment on a Prefect server (with a ``campaign-batch`` deployment), batches
    run as separate flow runs across the pool's workers: ``batch_runs`` of them (0: one per
    range, at most 8), with up to ``max_rounds`` dispatch rounds when runs are lost.
    Otherwise every batch runs here.
    """
    started = enqueue_audience(project_dir, campaign)
    summary = runner.RunSummary(**started["summary"])
    ranges = started["ranges"]
    deployment_id = fanout.batch_deployment_id() if ranges else None
    info: dict[str, Any] | None = None
    if deployment_id is None:
        _run_local(project_dir, campaign, ranges, summary)
    else:
        info = _run_distributed(deployment_id, project_dir, campaign, ranges, summary,
                                batch_runs, max_rounds, wait_timeout)
    result = finish_run(project_dir, campaign, summary.__dict__)
    if info is not None:
        result["distributed"] = info
    return result


@flow(name="campaign-batch", flow_run_name="{campaign}", log_prints=False)
def run_batches(project_dir: str, campaign: str, ranges: list[list[int]]) -> dict[str, Any]:
    """Send a group of keyset ranges of one campaign (a batch run a worker picked up)."""
    results = []
    for lo, hi in ranges:
        result = send_batch.with_options(name=f"send-batch {lo}-{hi}")(
            project_dir, campaign, lo, hi)
        results.append(result)
        if result.get("paused") or result.get("skipped"):
            break
    if fanout.on_server():
        fanout.report_batches(results)
    totals = {k: sum(int(r.get(k) or 0) for r in results)
              for k in ("sent", "failed", "bounced", "retried")}
    return {**totals, "batches": len(results), "worker": fanout.worker_label()}
