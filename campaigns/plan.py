"""Compile a validated campaign into a frozen, JSON-serialisable, content-hashed plan.

The plan is what a run executes and what the ledger rows point at (``source_version``):
the resolved audience conditions, one entry per variant with everything a renderer needs,
and a version that changes whenever the file or one of its templates changes.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from campaigns.spec import CampaignSpec
from reach import clock
from reach.project import Project
from reach.spec import content_hash


class VariantPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    weight: float = 1.0
    channel: str
    from_addr: str
    subject: str | None = None
    preheader: str | None = None
    template: str | None = None  # path relative to the project
    text_template: str | None = None
    body: str | None = None  # inline SMS body
    reply_to: str | None = None


class CampaignPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    source_file: str
    channel: str
    segment: str | None
    match: str
    conditions: list[dict[str, Any]]
    segments: dict[str, dict[str, Any]]  # referenced segments, for nested `segment:` refs
    variants: list[VariantPlan]
    ab_test: dict[str, Any] | None
    holdout: float
    goal: dict[str, Any] | None
    cost: dict[str, Any]
    schedule: str | None
    throttle_per_second: float | None

    def variant_for(self, row: dict[str, Any]) -> VariantPlan:
        """What a ledger row of this campaign is rendered with."""
        return self.variant(row.get("variant"))

    def variant(self, variant_id: str | None) -> VariantPlan:
        if variant_id is None:
            return self.variants[0]
        return next(v for v in self.variants if v.id == variant_id)


def _file_hash(project: Project, rel: str | None) -> str | None:
    if not rel:
        return None
    path = project.template_path(rel)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else None


def compile_campaign(project: Project, name: str) -> CampaignPlan:
    """The plan of one campaign of a validated project."""
    item = project.campaigns[name]
    spec: CampaignSpec = item.spec
    variants: list[VariantPlan] = []
    base: dict[str, Any]
    if spec.channel == "email":
        e = spec.email
        base = {"channel": "email", "from_addr": e.from_, "subject": e.subject,
                "preheader": e.preheader, "template": e.template,
                "text_template": e.text_template, "reply_to": e.reply_to}
    else:
        s = spec.sms
        base = {"channel": "sms", "from_addr": s.from_, "template": s.template, "body": s.body}
    if spec.ab_test:
        for v in spec.ab_test.variants:
            over = {k: val for k, val in {
                "subject": v.subject, "preheader": v.preheader, "template": v.template,
                "body": v.body, "from_addr": v.from_}.items() if val is not None}
            if over.get("body"):
                over["template"] = None
            variants.append(VariantPlan(id=v.id, weight=v.weight, **{**base, **over}))
    else:
        variants.append(VariantPlan(id="main", **base))

    segments = project.segment_specs()
    if spec.audience.segment:
        seg = segments[spec.audience.segment]
        conditions = [c if isinstance(c, dict) else c.model_dump(exclude_none=True, by_alias=True)
                      for c in _dump(seg)["conditions"]]
        match = _dump(seg).get("match", "all")
    else:
        conditions, match = list(spec.audience.conditions or []), spec.audience.match
    body = {
        "name": spec.campaign,
        "source_file": project.rel(item.path),
        "channel": spec.channel,
        "segment": spec.audience.segment,
        "match": match,
        "conditions": conditions,
        "segments": {k: _dump(v) for k, v in segments.items()},
        "variants": [v.model_dump() for v in variants],
        "ab_test": spec.ab_test.model_dump(by_alias=True) if spec.ab_test else None,
        "holdout": spec.holdout,
        "goal": spec.goal.model_dump() if spec.goal else None,
        "cost": spec.cost.model_dump(),
        "schedule": spec.schedule,
        "throttle_per_second": spec.throttle.per_second if spec.throttle else None,
    }
    files = sorted({f for v in variants for f in (v.template, v.text_template) if f})
    version = content_hash({"plan": body, "files": {f: _file_hash(project, f) for f in files}})
    return CampaignPlan(version=version, **body)


def _dump(spec: Any) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True, by_alias=True)


def occurrence(plan: CampaignPlan, at: datetime | None = None) -> str:
    """Which sending of the campaign a run belongs to: part of every idempotency key.

    A one-off campaign has one occurrence; a recurring (cron) campaign has one per scheduled
    time, and a run belongs to the latest scheduled time that has come.
    """
    schedule = plan.schedule
    if not schedule or not _is_cron(schedule):
        return "once"
    from croniter import croniter

    now = at or clock.now()
    prev = croniter(schedule, now).get_prev(datetime)
    return prev.strftime("%Y%m%dT%H%M")


def _is_cron(schedule: str) -> bool:
    return len(schedule.split()) >= 5 and "T" not in schedule
