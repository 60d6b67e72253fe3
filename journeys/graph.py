"""The compiled plan as a Mermaid flowchart (``reach graph JOURNEY``)."""

from __future__ import annotations

import re

from journeys.plan import JourneyPlan, Node

_SHAPES = {"branch": ("{", "}"), "split": ("{", "}"), "ab_test": ("{{", "}}"),
           "wait": ("([", "])"), "wait_for": ("([", "])"), "exit": ("[[", "]]")}


def _nid(step_id: str) -> str:
    # Mermaid ids: letters, digits and underscores only.
    return "s_" + re.sub(r"[^A-Za-z0-9_]", "_", step_id)


def _label(node: Node) -> str:
    c = node.config
    if node.kind in ("email", "sms"):
        m = c["message"]
        detail = m.get("subject") or m.get("template") or (m.get("body") or "")[:30]
        text = f"{node.id}<br/>{node.kind}: {detail}"
    elif node.kind == "wait":
        text = f"{node.id}<br/>wait {c.get('duration') or 'until ' + c.get('until', '')}"
    elif node.kind == "wait_for":
        text = f"{node.id}<br/>wait for {c['event']} ≤ {c['timeout']}"
    elif node.kind == "ab_test":
        text = f"{node.id}<br/>A/B on {c['metric']}"
    elif node.kind == "update":
        text = f"{node.id}<br/>update {', '.join(c['attributes'])}"
    elif node.kind == "webhook":
        text = f"{node.id}<br/>webhook"
    else:
        text = f"{node.id}<br/>{node.kind}"
    return text.replace('"', "'")


def _edge_label(text: str) -> str:
    return re.sub(r"[|\"]", "'", text)[:40]


def mermaid(plan: JourneyPlan) -> str:
    """A ``flowchart TD`` of the plan: one node per step, edges for what follows."""
    lines = ["flowchart TD", f'  start(("{plan.name}")) --> {_nid(plan.first)}']
    lines.append('  finish(("end"))')
    for step_id in plan.order:
        node = plan.nodes[step_id]
        left, right = _SHAPES.get(node.kind, ("[", "]"))
        lines.append(f'  {_nid(node.id)}{left}"{_label(node)}"{right}')
    for step_id in plan.order:
        node, src = plan.nodes[step_id], _nid(step_id)

        def to(target: str | None) -> str:
            return _nid(target) if target else "finish"

        c = node.config
        if node.kind == "branch":
            for arm in c["arms"]:
                cond = "else" if arm["if"] is None else _edge_label(_cond_text(arm["if"]))
                lines.append(f"  {src} -->|{cond}| {to(arm['to'])}")
            if all(arm["if"] is not None for arm in c["arms"]):
                lines.append(f"  {src} -->|no match| {to(node.next)}")
        elif node.kind == "split":
            for p in c["paths"]:
                lines.append(f"  {src} -->|{p['id']} {p['percent']:g}%| {to(p['to'])}")
        elif node.kind == "wait_for":
            lines.append(f"  {src} -->|{_edge_label(c['event'])}| {to(node.next)}")
            lines.append(f"  {src} -->|timeout| {to(c['on_timeout'])}")
        elif node.kind == "ab_test":
            names = " / ".join(f"{v['id']} {v['weight']:g}" for v in c["variants"])
            lines.append(f"  {src} -->|{_edge_label(names)}| {to(node.next)}")
        elif node.kind == "exit":
            lines.append(f"  {src} --> finish")
        else:
            lines.append(f"  {src} --> {to(node.next)}")
    return "\n".join(lines) + "\n"


def _cond_text(cond: dict) -> str:
    key = next(iter(cond))
    value = cond[key]
    if isinstance(value, dict | list):
        return key
    rest = ", ".join(f"{k} {v}" for k, v in cond.items() if k != key)
    return f"{key} {value}" + (f" {rest}" if rest else "")
