"""Compile a validated journey into a frozen, JSON-serialisable, content-hashed plan.

The plan is a flat map ``step id -> Node``: nested steps (branch arms, split paths,
``on_timeout``) are flattened, and every node names the step that follows it (``next``), so
the runtime only ever needs a contact's current step id. After a branch's nested steps the
contact continues with the step after the branch. The version (content hash) covers the
plan and the bytes of every template it uses: editing either makes a new version.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr

from campaigns.plan import VariantPlan
from journeys.spec import (
    AbTestStep,
    BranchStep,
    EmailBody,
    EmailStep,
    ExitStep,
    IfArm,
    JourneySpec,
    SmsBody,
    SmsStep,
    SplitStep,
    UpdateStep,
    WaitForStep,
    WaitStep,
    WebhookStep,
)
from reach.project import Project
from reach.spec import content_hash

MESSAGE_KINDS = ("email", "sms", "ab_test")


class Node(BaseModel):
    """One step of the flattened plan."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: str  # email sms wait wait_for branch split ab_test update webhook exit
    next: str | None  # the step after this one; None: the journey ends here
    parent: str | None = None  # the branch / split / wait_for this step is nested in
    config: dict[str, Any] = {}


class JourneyPlan(BaseModel):
    """What ``tick_journey`` executes and what ledger rows point at (``source_version``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    source_file: str
    entry: dict[str, Any]
    goal: dict[str, Any] | None
    exit_on_goal: bool
    cost: dict[str, Any] | None = None
    settings: dict[str, Any]
    segments: dict[str, dict[str, Any]]
    first: str
    order: list[str]  # step ids in document order (graphs and reports)
    nodes: dict[str, Node]

    _variants: dict[tuple[str | None, str | None], VariantPlan] = PrivateAttr(
        default_factory=dict)

    @property
    def channel(self) -> str:
        """Journeys mix channels; the sender is given a per-channel view (:class:`ChannelPlan`)."""
        return "email"

    def variant_for(self, row: dict[str, Any]) -> VariantPlan:
        """What a ledger row of this journey is rendered with (the sender's protocol)."""
        key = (row.get("step_id"), row.get("variant"))
        if key not in self._variants:
            node = self.nodes[str(row.get("step_id"))]
            message = node.config.get("message")
            if node.kind == "ab_test":
                message = next(v for v in node.config["variants"]
                               if v["id"] == row.get("variant"))["message"]
            if message is None:
                raise KeyError(f"step {node.id!r} of journey {self.name!r} sends no message")
            self._variants[key] = VariantPlan(id=row.get("variant") or "main", **message)
        return self._variants[key]


class ChannelPlan:
    """The plan seen by ``campaigns.sender.send_claimed``, which opens one messenger per call."""

    def __init__(self, plan: JourneyPlan, channel: str) -> None:
        self.plan, self.channel, self.name = plan, channel, plan.name
        self.throttle_per_second = None
        # A plain dict: the plan's own cache is a pydantic private attribute, whose lookup
        # cost ~10 µs, twice per message.
        self._variants: dict[tuple[Any, Any], VariantPlan] = {}

    def variant_for(self, row: dict[str, Any]) -> VariantPlan:
        key = (row.get("step_id"), row.get("variant"))
        variant = self._variants.get(key)
        if variant is None:
            variant = self._variants[key] = self.plan.variant_for(row)
        return variant


def _message(body: EmailBody | SmsBody, channel: str, default_from: str | None) -> dict[str, Any]:
    if isinstance(body, EmailBody):
        return {"channel": "email", "from_addr": body.from_ or default_from or "",
                "subject": body.subject, "preheader": body.preheader, "template": body.template,
                "text_template": body.text_template, "reply_to": body.reply_to}
    return {"channel": "sms", "from_addr": body.from_ or "", "template": body.template,
            "body": body.body}


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", exclude_none=True, by_alias=True)


class _Flattener:
    def __init__(self, default_from: str | None) -> None:
        self.default_from = default_from
        self.nodes: dict[str, Node] = {}
        self.order: list[str] = []

    def steps(self, steps: list[Any], after: str | None, parent: str | None) -> str | None:
        """Flatten ``steps``; return the id the sequence starts with (``after`` if empty)."""
        for i, step in enumerate(steps):
            nxt = steps[i + 1].id if i + 1 < len(steps) else after
            self.step(step, nxt, parent)
        return steps[0].id if steps else after

    def step(self, step: Any, nxt: str | None, parent: str | None) -> None:
        self.order.append(step.id)
        kind, config = "exit", {}
        if isinstance(step, EmailStep):
            kind, config = "email", {"message": _message(step.email, "email", self.default_from)}
        elif isinstance(step, SmsStep):
            kind, config = "sms", {"message": _message(step.sms, "sms", self.default_from)}
        elif isinstance(step, WaitStep):
            kind = "wait"
            config = ({"duration": step.wait} if isinstance(step.wait, str)
                      else {"until": step.wait.until})
        elif isinstance(step, WaitForStep):
            kind = "wait_for"
            config = {"event": step.wait_for.event, "timeout": step.wait_for.timeout}
            config["on_timeout"] = self.steps(step.on_timeout, nxt, step.id)
        elif isinstance(step, BranchStep):
            kind, arms = "branch", []
            for arm in step.branch:
                cond = _dump(arm.if_) if isinstance(arm, IfArm) else None
                inner = arm.steps if isinstance(arm, IfArm) else arm.else_
                arms.append({"if": cond, "to": self.steps(inner, nxt, step.id)})
            config = {"arms": arms}
        elif isinstance(step, SplitStep):
            kind, paths = "split", []
            for i, path in enumerate(step.split):
                paths.append({"id": path.id or f"p{i + 1}", "percent": path.percent,
                              "to": self.steps(path.steps, nxt, step.id)})
            config = {"paths": paths}
        elif isinstance(step, AbTestStep):
            kind, ab = "ab_test", step.ab_test
            variants = []
            for v in ab.variants:
                body = v.email if v.email is not None else v.sms
                variants.append({"id": v.id, "weight": v.weight,
                                 "message": _message(body, "", self.default_from)})
            config = {"variants": variants, "metric": ab.metric,
                      "decide_after": ab.decide_after, "confidence": ab.confidence,
                      "fallback": ab.fallback}
        elif isinstance(step, UpdateStep):
            kind, config = "update", {"attributes": dict(step.update.attributes)}
        elif isinstance(step, WebhookStep):
            kind = "webhook"
            config = {"url": step.webhook.url, "method": step.webhook.method,
                      "body": dict(step.webhook.body)}
        elif isinstance(step, ExitStep):
            reason = step.exit if isinstance(step.exit, str) else "exit"
            kind, config = "exit", {"reason": reason}
        self.nodes[step.id] = Node(id=step.id, kind=kind, next=nxt, parent=parent,
                                   config=config)


def _file_hash(project: Project, rel: str) -> str | None:
    path = project.template_path(rel)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else None


def template_files(nodes: dict[str, Node]) -> list[str]:
    """Every template file the plan's messages use."""
    files: set[str] = set()
    for node in nodes.values():
        messages = [node.config.get("message")] + [v["message"] for v in
                                                   node.config.get("variants", [])]
        for m in messages:
            if m:
                files.update(f for f in (m.get("template"), m.get("text_template")) if f)
    return sorted(files)


def compile_spec(spec: JourneySpec, *, source_file: str, segments: dict[str, Any],
                 file_hashes: dict[str, str | None]) -> JourneyPlan:
    """The plan of a journey spec (``file_hashes``: template path -> content hash)."""
    flat = _Flattener(spec.settings.from_)
    first = flat.steps(spec.steps, None, None)
    entry = _dump(spec.entry)
    body = {
        "name": spec.journey,
        "source_file": source_file,
        "entry": entry,
        "goal": _dump(spec.goal) if spec.goal else None,
        "exit_on_goal": spec.exit_on_goal,
        "settings": _dump(spec.settings),
        "segments": segments,
        "first": first,
        "order": flat.order,
        "nodes": {k: v.model_dump() for k, v in flat.nodes.items()},
    }
    if spec.cost.model_fields_set:
        # Only when written: a journey without ``cost:`` keeps the version (content hash)
        # it had before journeys could have one.
        body["cost"] = spec.cost.model_dump()
    version = content_hash({"plan": body, "files": file_hashes})
    return JourneyPlan(version=version, **body)


def _segment_refs(data: Any) -> set[str]:
    """Names under every ``segment:`` key in a dumped structure."""
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "segment" and isinstance(value, str):
                found.add(value)
            else:
                found |= _segment_refs(value)
    elif isinstance(data, list):
        for value in data:
            found |= _segment_refs(value)
    return found


def referenced_segments(spec: JourneySpec, all_segments: dict[str, Any]) -> dict[str, Any]:
    """The segments the journey uses, directly or through other segments (only those count
    for the version: editing an unrelated segment must not make a new journey version)."""
    todo = _segment_refs(_dump(spec.entry)) | _segment_refs([_dump(s) for s in spec.steps])
    out: dict[str, Any] = {}
    while todo:
        name = todo.pop()
        if name in out or name not in all_segments:
            continue
        out[name] = _dump(all_segments[name])
        todo |= _segment_refs(out[name].get("conditions", []))
    return dict(sorted(out.items()))


def compile_journey(project: Project, name: str) -> JourneyPlan:
    """The plan of one journey of a validated project."""
    item = project.journeys[name]
    spec: JourneySpec = item.spec
    segments = referenced_segments(spec, project.segment_specs())
    draft = compile_spec(spec, source_file=project.rel(item.path), segments=segments,
                         file_hashes={})
    hashes = {f: _file_hash(project, f) for f in template_files(draft.nodes)}
    return compile_spec(spec, source_file=project.rel(item.path), segments=segments,
                        file_hashes=hashes)


def load_plan(data: dict[str, Any]) -> JourneyPlan:
    """A plan read back from the ``definitions`` table."""
    return JourneyPlan.model_validate(data)
