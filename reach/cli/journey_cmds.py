"""Journey commands: tick, graph, simulate, and ``reach run JOURNEY``."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from reach.cli.common import console, engine, err_console, handle_errors, quiet_prefect, settings
from reach.errors import ReachError


def register(app: typer.Typer) -> None:
    """Add ``tick``, ``graph`` and ``simulate`` to the ``reach`` app."""
    app.command("tick")(tick)
    app.command("graph")(graph)
    app.command("simulate")(simulate)


def _journey(ref: str) -> tuple[Any, Any, Any]:
    from reach.cli.run_cmds import load_target
    from reach.project import hint_for

    cfg, project, kind, item = load_target(ref)
    if kind != "journey":
        raise ReachError("R202", f"{ref!r} is a campaign, not a journey",
                         hint=hint_for(ref, list(project.journeys), "journeys"))
    return cfg, project, item


@handle_errors
def tick(as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON.")
         ) -> None:
    """Advance every live journey and every due campaign step once (one Prefect flow run)."""
    cfg = settings()
    quiet_prefect()
    from journeys.flows import tick as tick_flow

    result = tick_flow(str(cfg.project_dir))
    if as_json:
        print(json.dumps(result, default=str))
        return
    journeys = result.get("journeys", {})
    if not journeys:
        console.print("no journeys to advance")
    for stats in journeys.values():
        _print_stats(stats)
    for name, summary in (result.get("campaigns") or {}).items():
        console.print(f"campaign {name}: {summary}")


def _print_stats(s: dict[str, Any]) -> None:
    exits = ", ".join(f"{k} {v}" for k, v in sorted(s.get("exited", {}).items())) or "none"
    console.print(f"[bold]{s['journey']}[/bold] (version {s['version']}): "
                  f"{s['enrolled']} entered, {s['reentered']} re-entered, "
                  f"{s['advanced']} advanced, {s['sent']} sent, {s['failed']} failed, "
                  f"{s['held']} held; exits: {exits}")


def run_journey(cfg: Any, project: Any, item: Any, *, dry_run: bool, as_json: bool) -> None:
    """``reach run JOURNEY``: one tick of this journey (``--dry-run``: counts only)."""
    from campaigns.run import worker_id
    from journeys.plan import compile_journey
    from journeys.runtime import tick_journey

    plan = compile_journey(project, item.spec.journey)
    eng = engine(cfg)
    if dry_run:
        info = dry_run_counts(eng, plan)
        if as_json:
            print(json.dumps(info, default=str))
        else:
            console.print(f"[bold]{plan.name}[/bold] (version {plan.version}): "
                          f"{info['would_enter']} would enter, {info['due']} due now, "
                          f"{info['active']} in the journey; nothing sent.")
        return
    stats = tick_journey(cfg, eng, plan, owner=worker_id(), batch_size=cfg.batch_size)
    if as_json:
        print(json.dumps(stats.to_dict(), default=str))
    else:
        _print_stats(stats.to_dict())


def dry_run_counts(eng: Any, plan: Any) -> dict[str, Any]:
    """Who would enter now and who is due, without writing anything."""
    from sqlalchemy import and_, exists, func, select

    from journeys.enrol import live_since, segment_clause
    from reach import clock
    from reach.db.schema import contacts, events
    from reach.db.schema import journey_states as js

    now = clock.now()
    with eng.connect() as conn:
        no_state = ~exists(select(js.c.id).where(js.c.journey == plan.name,
                                                 js.c.contact_id == contacts.c.id))
        if plan.entry.get("event"):
            since = live_since(conn, plan.name)
            entrants = select(func.count(func.distinct(events.c.contact_id))).where(
                events.c.type == plan.entry["event"], events.c.occurred_at >= since,
                events.c.occurred_at <= now, ~exists(select(js.c.id).where(
                    js.c.journey == plan.name, js.c.contact_id == events.c.contact_id)))
        else:
            entrants = select(func.count()).select_from(contacts).where(
                segment_clause(plan, now), no_state)
        would = conn.execute(entrants).scalar() or 0
        active = and_(js.c.journey == plan.name, js.c.status == "active")
        due = conn.execute(select(func.count()).where(active, js.c.due_at <= now)).scalar()
        total = conn.execute(select(func.count()).where(active)).scalar()
    return {"journey": plan.name, "version": plan.version, "would_enter": int(would),
            "due": int(due or 0), "active": int(total or 0)}


@handle_errors
def graph(journey: str = typer.Argument(..., help="Journey name or file.")) -> None:
    """Print the journey as a Mermaid flowchart."""
    from journeys.graph import mermaid
    from journeys.plan import compile_journey

    _, project, item = _journey(journey)
    print(mermaid(compile_journey(project, item.spec.journey)), end="")


@contextmanager
def _env(name: str, value: str) -> Any:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@handle_errors
def simulate(
    journey: str = typer.Argument(..., help="Journey name or file."),
    contacts_file: Path = typer.Option(None, "--contacts", exists=True, dir_okay=False,
                                       help="Contacts (CSV / JSON lines); default: a copy of "
                                       "the project's contacts."),
    events_file: Path = typer.Option(None, "--events", exists=True, dir_okay=False,
                                     help="Events (JSON lines) that happen during the run."),
    days: float = typer.Option(14, "--days", min=0, help="How long to simulate."),
    every: str = typer.Option("1h", "--every", help="Virtual time between ticks."),
    start: str = typer.Option(None, "--start", help="Virtual start time (ISO 8601)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable result."),
) -> None:
    """Run a journey on a copy of the data on a virtual clock; nothing is really sent."""
    from journeys.plan import compile_journey
    from journeys.simulate import simulate_journey
    from reach import clock

    cfg, project, item = _journey(journey)
    plan = compile_journey(project, item.spec.journey)
    begin = clock.parse_instant(start) if start else clock.now()
    step = clock.parse_duration(every)
    if step <= timedelta(0):
        raise ReachError("I501", "--every must be a positive duration", "e.g. --every 1h")
    with tempfile.TemporaryDirectory(prefix="reach-sim-") as tmp, \
            _env("REACH_WEBHOOK_TRANSPORT", "outbox"):
        result = simulate_journey(cfg, plan, Path(tmp), contacts_file=contacts_file,
                                  events_file=events_file, start=begin,
                                  end=begin + timedelta(days=days), every=step)
    if as_json:
        print(json.dumps(result, default=str))
        return
    _print_simulation(result)


def _print_simulation(result: dict[str, Any]) -> None:
    console.print(f"[bold]Simulated {result['journey']}[/bold] from {result['start']} to "
                  f"{result['end']} ({result['ticks']} ticks); nothing was sent.")
    table = Table(title="Messages")
    for col in ("when", "contact", "step", "variant", "channel", "status"):
        table.add_column(col)
    for m in result["messages"]:
        table.add_row(_short(m["at"]), str(m["contact"]), m["step"], m["variant"] or "",
                      m["channel"], m["status"])
    console.print(table)
    funnel = Table(title="Steps")
    funnel.add_column("step")
    funnel.add_column("reached", justify="right")
    for step_id, n in result["steps"].items():
        funnel.add_row(step_id, str(n))
    console.print(funnel)
    console.print(f"entered: {result['entered']}; goal reached: {result['goal_reached']}; "
                  f"exits: {result['exits']}")
    for line in result.get("rejected", []):
        err_console.print(line, markup=False)


def _short(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else str(value)
