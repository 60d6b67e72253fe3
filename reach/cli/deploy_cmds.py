"""Commands that schedule: ``reach deploy`` (Prefect server) and ``reach scheduler`` (embedded)."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import typer

from reach.cli.common import console, err_console, handle_errors, quiet_prefect, settings
from reach.errors import ValidationFailed


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)
    app.command("scheduler")(scheduler)


@handle_errors
def deploy(
    pool: str = typer.Option(None, "--pool", help="Work pool (default: prefect.yaml's, 'reach')."),
    source: Path = typer.Option(None, "--source", file_okay=False,
                                help="Folder with prefect.yaml and the flows (default: the "
                                     "Reach checkout)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was applied as JSON."),
) -> None:
    """Register prefect.yaml's deployments and every campaign's schedule with a Prefect server."""
    from reach.deploy import SOURCE_ROOT, apply_deployments, require_api_url

    require_api_url()  # before loading anything: the most likely mistake, the clearest message
    from reach.project import load_project

    cfg = settings()
    project = load_project(cfg)
    if not project.ok:
        raise ValidationFailed(project.diagnostics)
    quiet_prefect()
    report = apply_deployments(cfg, project, source=(source or SOURCE_ROOT).resolve(), pool=pool)
    if as_json:
        print(json.dumps(report.__dict__, default=str))
        return
    for name, ident in report.deployments.items():
        console.print(f"deployment [bold]{name}[/bold] ({ident})")
    for name, expr in report.cron.items():
        console.print(f"  campaign-run schedule {name}: cron {expr!r} (UTC)")
    for name, when in report.once.items():
        console.print(f"  campaign-run once {name}: {when}")
    for item in report.removed_schedules + report.removed_runs:
        console.print(f"  removed {item}")
    for name, rate in report.rate_limits.items():
        console.print(f"  global rate limit {name}: {rate:g}/s across all workers")


def _tick_once(project_dir: str, tick: Any) -> dict[str, Any]:
    started = time.monotonic()
    result = tick(project_dir)
    result = result if isinstance(result, dict) else {}
    campaigns = result.get("campaigns") or {}
    journeys = result.get("journeys") or {}
    err_console.print(f"tick: {len(campaigns)} campaign(s), {len(journeys)} journey(s) "
                      f"in {time.monotonic() - started:.1f}s")
    return result


@handle_errors
def scheduler(
    once: bool = typer.Option(False, "--once", help="Tick once and exit."),
    interval: float = typer.Option(60.0, "--interval", min=0.1,
                                   help="Seconds between ticks (default: every minute)."),
) -> None:
    """Tick every minute in one warm process (the embedded default has no Prefect scheduler).

    Prefect is imported once and its temporary server started once; each tick runs the
    `journey-tick` flow in this process. Ctrl-C or SIGTERM stops after the current tick.
    """
    cfg = settings()
    quiet_prefect()
    from journeys.flows import tick

    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, _stop)
    project_dir = str(cfg.project_dir)
    err_console.print(f"scheduler: ticking {project_dir} every {interval:g}s "
                      "(Ctrl-C to stop)" if not once else f"scheduler: one tick of {project_dir}")
    try:
        while not stop.is_set():
            next_at = time.monotonic() + interval
            try:
                _tick_once(project_dir, tick)
            except ValidationFailed as exc:
                # A file being edited: report it and keep ticking; the next tick may be fine.
                err_console.print(exc.render(cfg.project_dir), markup=False, highlight=False)
                if once:
                    raise
            except Exception as exc:  # a failed tick must not end the schedule
                err_console.print(f"[red]tick failed:[/red] {exc.__class__.__name__}: {exc}")
                if once:
                    raise typer.Exit(1) from None
            if once:
                break
            stop.wait(max(0.0, next_at - time.monotonic()))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    err_console.print("scheduler: stopped")
