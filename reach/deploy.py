"""``reach deploy``: the deployments of ``prefect.yaml`` plus each campaign's schedule, applied
to a Prefect server through Prefect's own Python API.

* Deployments come from ``prefect.yaml`` at the source root (the same file ``prefect deploy
  --all`` reads), with ``{{ $REACH_PROJECT_DIR }}`` replaced by the project folder.
* A campaign whose ``schedule:`` is a cron expression becomes a cron schedule (timezone UTC,
  as ``reach tick`` and the ledger's occurrence keys read cron) of the ``campaign-run``
  deployment, with the parameter ``campaign`` set and the slug ``campaign-NAME``.
* A campaign whose ``schedule:`` is an ISO time becomes one scheduled flow run at that time
  (idempotency key ``reach-once:NAME:TIME``), not an RRULE with COUNT=1: a time already past
  still runs once (as a late run) until the campaign has started, and the UI lists it as what
  it is, one run. A changed or removed time deletes the old run if it has not started.
* Schedules and one-off runs that no longer match a file are removed (redeploying alone
  keeps them; PREFECT-NOTES.md).
* Provider rate limits: a transport URL's ``max_per_second`` becomes the Prefect global rate
  limit ``reach-<channel>`` shared by every worker (see ``campaigns.fanout``).
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from reach.errors import ReachError

SOURCE_ROOT = Path(__file__).resolve().parents[1]
PROJECT_VAR = re.compile(r"\{\{\s*\$REACH_PROJECT_DIR\s*\}\}")


@dataclass
class DeployReport:
    """What ``apply_deployments`` did, for the CLI and tests."""

    deployments: dict[str, str] = field(default_factory=dict)  # name → id
    cron: dict[str, str] = field(default_factory=dict)  # campaign → cron
    once: dict[str, str] = field(default_factory=dict)  # campaign → ISO time
    removed_schedules: list[str] = field(default_factory=list)
    removed_runs: list[str] = field(default_factory=list)
    rate_limits: dict[str, float] = field(default_factory=dict)  # limit name → per second


def require_api_url() -> str:
    """The Prefect server's API URL, or ReachError C601 with what to set."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise ReachError(
            "C601", "reach deploy needs a Prefect server, but PREFECT_API_URL is not set",
            hint="start one with `prefect server start`, then "
                 "export PREFECT_API_URL=http://HOST:4200/api (embedded default without a "
                 "server: `reach scheduler` ticks every minute)")
    return str(url)


def load_deployments(source: Path, project_dir: Path) -> list[dict[str, Any]]:
    """The ``deployments:`` of ``source/prefect.yaml`` with the project folder filled in."""
    from ruamel.yaml import YAML

    path = source / "prefect.yaml"
    if not path.exists():
        raise ReachError("C601", f"no prefect.yaml in {source}",
                         hint="run from the Reach checkout or pass --source DIR")
    text = PROJECT_VAR.sub(str(project_dir).replace("\\", "/"), path.read_text())
    doc = YAML(typ="safe").load(text) or {}
    return list(doc.get("deployments") or [])


def campaign_schedules(project: Any) -> tuple[dict[str, str], dict[str, datetime]]:
    """Cron expressions and one-off times of the project's scheduled campaigns."""
    from campaigns.plan import _is_cron
    from reach.clock import parse_instant

    cron: dict[str, str] = {}
    once: dict[str, datetime] = {}
    for name in sorted(project.campaigns):
        schedule = project.campaigns[name].spec.schedule
        if not schedule:
            continue
        if _is_cron(schedule):
            cron[name] = schedule
        else:
            once[name] = parse_instant(schedule)
    return cron, once


def rate_limits(settings: Any) -> dict[str, float]:
    """Global rate limits the transports ask for: ``reach-<channel>`` → messages per second."""
    from campaigns.channels.urls import parse_transport_url
    from campaigns.fanout import limit_name

    out: dict[str, float] = {}
    for channel, raw in (("email", settings.email_transport), ("sms", settings.sms_transport)):
        rate = parse_transport_url(raw or "outbox").params.get("max_per_second")
        if rate:
            out[limit_name(channel)] = float(rate)
    return out


def _schedule_objects(spec: dict[str, Any], extra: list[Any]) -> list[Any]:
    from prefect.schedules import Cron, Interval, RRule

    out = []
    for item in spec.get("schedules") or []:
        common = {"timezone": item.get("timezone"), "slug": item.get("slug"),
                  "parameters": item.get("parameters") or {},
                  "active": item.get("active", True)}
        if item.get("cron"):
            out.append(Cron(item["cron"], **common))
        elif item.get("interval"):
            out.append(Interval(item["interval"], **common))
        elif item.get("rrule"):
            out.append(RRule(item["rrule"], **common))
    return out + extra


def _concurrency(spec: dict[str, Any]) -> Any:
    limit = spec.get("concurrency_limit")
    if isinstance(limit, dict):
        from prefect.client.schemas.objects import ConcurrencyLimitConfig

        return ConcurrencyLimitConfig(limit=limit["limit"],
                                      collision_strategy=limit.get("collision_strategy",
                                                                   "ENQUEUE"))
    return limit


def _ensure_pool(client: Any, pool: str) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    try:
        client.read_work_pool(pool)
    except ObjectNotFound:
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))


def _sync_schedules(client: Any, deployment_id: Any, keep: set[str]) -> list[str]:
    """Delete the deployment's schedules whose slug is not in ``keep``."""
    removed = []
    for schedule in client.read_deployment_schedules(deployment_id):
        if schedule.slug not in keep:
            client.delete_deployment_schedule(deployment_id, schedule.id)
            removed.append(schedule.slug or str(schedule.id))
    return removed


def _sync_once(client: Any, deployment_id: Any, settings: Any, engine: Any,
               once: dict[str, datetime], report: DeployReport) -> None:
    """One scheduled flow run per one-off campaign; stale unstarted ones are deleted."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Scheduled

    from campaigns.run import campaign_status
    from reach import clock

    wanted: dict[str, tuple[str, datetime]] = {}
    for name, when in once.items():
        started = campaign_status(engine, name)[0] is not None
        if when <= clock.now() and started:
            continue  # it ran; nothing left to schedule
        wanted[f"reach-once:{name}:{when.isoformat()}"] = (name, when)
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["reach-once"]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))))
    existing = {r.idempotency_key: r for r in runs}
    for key, run in existing.items():
        if key not in wanted:
            client.delete_flow_run(run.id)
            report.removed_runs.append(key or str(run.id))
    for key, (name, when) in wanted.items():
        client.create_flow_run_from_deployment(
            deployment_id, parameters={"campaign": name},
            state=Scheduled(scheduled_time=when), name=f"{name} (once)",
            tags=["reach", "reach-once", f"campaign:{name}"], idempotency_key=key)
        report.once[name] = when.isoformat()


def apply_deployments(settings: Any, project: Any, *, source: Path = SOURCE_ROOT,
                      pool: str | None = None) -> DeployReport:
    """Create or update every deployment of prefect.yaml and the campaigns' schedules."""
    require_api_url()
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.schedules import Cron

    from reach.db import connect

    engine = connect(settings.resolved_database_url)
    report = DeployReport()
    cron, once = campaign_schedules(project)
    report.cron = dict(cron)
    specs = load_deployments(source, settings.project_dir)
    with get_client(sync_client=True) as client:
        for spec in specs:
            pool_name = pool or (spec.get("work_pool") or {}).get("name") or "reach"
            _ensure_pool(client, pool_name)
            extra = []
            if spec["name"] == "campaign-run":
                extra = [Cron(expr, timezone="UTC", slug=f"campaign-{name}",
                              parameters={"campaign": name}) for name, expr in cron.items()]
            schedules = _schedule_objects(spec, extra)
            loaded = flow.from_source(source=str(source), entrypoint=spec["entrypoint"])
            deployment_id = loaded.deploy(
                name=spec["name"], work_pool_name=pool_name, build=False, push=False,
                parameters=spec.get("parameters") or {}, schedules=schedules,
                concurrency_limit=_concurrency(spec), description=spec.get("description"),
                tags=spec.get("tags") or [], print_next_steps=False, ignore_warnings=True)
            report.deployments[spec["name"]] = str(deployment_id)
            keep = {s.slug for s in schedules if s.slug}
            report.removed_schedules += [f"{spec['name']}:{slug}" for slug in
                                         _sync_schedules(client, deployment_id, keep)]
            if spec["name"] == "campaign-run":
                _sync_once(client, deployment_id, settings, engine, once, report)
        wanted = rate_limits(settings)
        for name, rate in wanted.items():
            # The bucket holds one second of the rate: a chunk takes as many slots as it has
            # rows and is cut to the bucket's size (campaigns.fanout), so the fleet's burst
            # is at most one second's worth.
            client.upsert_global_concurrency_limit_by_name(
                name, limit=max(1, math.ceil(rate)), slot_decay_per_second=rate)
            report.rate_limits[name] = rate
        for channel in ("email", "sms"):
            from campaigns.fanout import limit_name

            stale = limit_name(channel)
            if stale not in wanted:
                _delete_limit(client, stale)
    return report


def _delete_limit(client: Any, name: str) -> None:
    from prefect.exceptions import ObjectNotFound

    with contextlib.suppress(ObjectNotFound):
        client.delete_global_concurrency_limit_by_name(name)
