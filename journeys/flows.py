"""``reach tick`` as a Prefect flow: due campaign work, then every journey of the project.

Thin orchestration over :mod:`journeys.runtime` (importable and tested without Prefect).
Each journey's preparation and each batch of due contacts is a task; a waiting contact is
a row in the database, never a sleeping task or flow run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from journeys import runtime


def _context(project_dir: str) -> tuple[Any, Any, Any]:
    from reach.db import connect
    from reach.errors import ValidationFailed
    from reach.project import load_project
    from reach.settings import load_settings

    settings = load_settings(project_dir)
    project = load_project(settings)
    if not project.ok:
        raise ValidationFailed(project.diagnostics)
    return settings, connect(settings.resolved_database_url), project


def _plan(project: Any, name: str) -> Any:
    from journeys.plan import compile_journey

    return compile_journey(project, name)


@task(name="tick-campaigns", cache_policy=NO_CACHE)
def tick_campaigns_task(project_dir: str) -> dict[str, Any]:
    from campaigns.due import tick_campaigns

    settings, engine, _ = _context(project_dir)
    return tick_campaigns(settings, engine)


@task(name="prepare-journey", cache_policy=NO_CACHE)
def prepare_journey(project_dir: str, journey: str) -> dict[str, Any]:
    settings, engine, project = _context(project_dir)
    return runtime.prepare_tick(settings, engine, _plan(project, journey)).to_dict()


@task(name="journey-batch", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def journey_batch(project_dir: str, journey: str, owner: str) -> dict[str, Any]:
    """One batch of due contacts; a retry claims afresh (what was done is recorded)."""
    settings, engine, project = _context(project_dir)
    plan = _plan(project, journey)
    stats = runtime.TickStats(journey=plan.name, version=plan.version)
    runtime.run_batch(settings, engine, plan, owner=owner, batch_size=settings.batch_size,
                      stats=stats)
    return stats.to_dict()


@task(name="send-pending", cache_policy=NO_CACHE)
def send_pending(project_dir: str, journey: str, owner: str) -> dict[str, Any]:
    settings, engine, project = _context(project_dir)
    plan = _plan(project, journey)
    stats = runtime.TickStats(journey=plan.name, version=plan.version)
    runtime.send_pending(settings, engine, plan, owner=owner, stats=stats)
    return stats.to_dict()


@task(name="decide-ab-tests", cache_policy=NO_CACHE)
def decide_ab_tests(project_dir: str, journey: str) -> dict[str, Any]:
    """The sequential A/B check of every undecided ab_test step (safe every tick)."""
    from journeys.abdecide import decide_tests

    settings, engine, project = _context(project_dir)
    return decide_tests(engine, _plan(project, journey))


@flow(name="journey-tick", log_prints=False)
def tick(project_dir: str) -> dict[str, Any]:
    """Advance every due campaign step and every live journey once."""
    from campaigns.run import worker_id
    from journeys.parallel import helping

    settings, engine, project = _context(project_dir)
    result: dict[str, Any] = {"campaigns": tick_campaigns_task(project_dir), "journeys": {}}
    owner = worker_id()
    for name in sorted(project.journeys):
        stats = runtime.TickStats(**prepare_journey(project_dir, name))
        # On PostgreSQL with many contacts due, helper processes claim batches beside this
        # loop's tasks (journeys.parallel); their totals join the journey's stats.
        with helping(settings, engine, _plan(project, name), batch_size=settings.batch_size,
                     stats=stats):
            while True:
                batch = runtime.TickStats(**journey_batch.with_options(
                    name=f"journey-batch {name}")(project_dir, name, owner))
                if not batch.batches:
                    break
                stats.merge(batch)
        stats.merge(runtime.TickStats(**send_pending(project_dir, name, owner)))
        stats.decisions.update(decide_ab_tests(project_dir, name))
        result["journeys"][name] = stats.to_dict()
    return result
