"""Commands that send: run, preview, tick."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from reach.cli.common import (
    console,
    engine,
    err_console,
    handle_errors,
    progress_bar,
    quiet_prefect,
    settings,
    state,
)
from reach.errors import ReachError, ValidationFailed


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("preview")(preview)


def load_target(ref: str) -> tuple[Any, Any, str, Any]:
    """Settings, project, kind and item of a campaign or journey given by name or path."""
    from reach.project import hint_for, load_project

    cfg = settings()
    path = Path(ref)
    candidate = path if path.is_absolute() else state.project / path
    project = load_project(cfg, [candidate.resolve()] if candidate.exists() else None)
    if not project.ok:
        raise ValidationFailed(project.diagnostics)
    found = project.find(ref)
    if found is None:
        names = [*project.campaigns, *project.journeys]
        raise ReachError("R202", f"no campaign or journey named {ref!r}",
                         hint=hint_for(ref, names, "campaigns and journeys"))
    return cfg, project, found[0], found[1]


@handle_errors
def run(
    target: str = typer.Argument(..., help="Campaign or journey: a file path or a name."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count and render; send nothing."),
    test_to: str = typer.Option(None, "--test-to", help="Send one test message to ADDR."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Send a campaign (as a Prefect flow), or advance one journey."""
    cfg, project, kind, item = load_target(target)
    if kind == "journey":
        from reach.cli.journey_cmds import run_journey

        run_journey(cfg, project, item, dry_run=dry_run, as_json=as_json)
        return
    from campaigns.plan import compile_campaign

    plan = compile_campaign(project, item.spec.campaign)
    eng = engine(cfg)
    if dry_run or test_to:
        from campaigns.preview import dry_run as do_dry_run
        from campaigns.preview import send_test

        if test_to:
            result = send_test(cfg, eng, plan, test_to)
            console.print(f"test message sent to {test_to}: {result}")
            return
        info = do_dry_run(cfg, eng, plan)
        print(json.dumps(info, indent=2, default=str)) if as_json else _print_dry(info)
        return
    quiet_prefect()
    from campaigns import run as runner
    from campaigns.flows import run_campaign

    with progress_bar(f"Sending {plan.name}", None) as advance:
        runner.progress_hook = advance
        try:
            summary = run_campaign(str(cfg.project_dir), plan.name)
        finally:
            runner.progress_hook = None
    if as_json:
        print(json.dumps(summary, default=str))
    else:
        _print_summary(summary)
    if summary.get("status") == "paused":
        raise typer.Exit(1)


def _print_dry(info: dict[str, Any]) -> None:
    console.print(f"[bold]{info['campaign']}[/bold] (version {info['version']}): "
                  f"{info['audience']} recipients would get {info['channel']}; nothing sent.")
    if info.get("sample"):
        console.print(f"  sample to {info['sample']['to']}: {info['sample']['subject']!r}")


def _print_summary(s: dict[str, Any]) -> None:
    table = Table(title=f"Campaign {s['campaign']} ({s['occurrence']}, version {s['version']})")
    for col in ("enqueued", "sent", "retried", "failed", "bounced", "unknown", "status"):
        table.add_column(col, justify="right")
    table.add_row(*(str(s.get(c, "")) for c in ("enqueued", "sent", "retried", "failed",
                                                  "bounced", "unknown", "status")))
    console.print(table)
    if s.get("ab"):
        console.print(f"A/B: {s['ab'].get('summary', s['ab'])}")
    if s.get("reason"):
        err_console.print(f"[yellow]{s['reason']}[/yellow]")
    if s.get("unknown"):
        err_console.print(f"[yellow]{s['unknown']} message(s) have an unknown outcome after a "
                          "crash; they were not resent (set resend_unknown = true to resend).")


@handle_errors
def preview(
    template: Path = typer.Argument(..., help="An .mjml or .sms template."),
    contact: str = typer.Option(None, "--contact", help="Email or external id of a contact."),
    subject: str = typer.Option("Preview", "--subject"),
    from_addr: str = typer.Option("Reach Preview <preview@reach.test>", "--from"),
    html: Path = typer.Option(None, "--html", help="Write the HTML body to this file."),
) -> None:
    """Render one message exactly as it would be sent."""
    from campaigns.preview import preview_template

    cfg = settings()
    eng = engine(cfg)
    result = preview_template(cfg, eng, template, contact=contact, subject=subject,
                              from_addr=from_addr)
    if html and result.get("html"):
        html.write_text(result["html"], encoding="utf-8")
        err_console.print(f"wrote {html}")
    print(result["text"])
