"""Commands around results: serve, report, demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from reach.cli.common import console, engine, handle_errors, settings
from reach.errors import ReachError


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("report")(report)
    app.command("demo")(demo)


@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8787, "--port"),
    workers: int = typer.Option(1, "--workers", min=1),
) -> None:
    """The tracking, unsubscribe and events web server."""
    from tracking.server import serve as run_server

    cfg = settings()
    engine(cfg)  # migrate before workers start
    run_server(cfg, host=host, port=port, workers=workers)


ROWS = [
    ("Audience", "audience", None), ("Sent", "sent", None), ("Delivered", "delivered", None),
    ("Bounced", "bounced", None), ("Failed", "failed", None), ("Unknown", "unknown", None),
    ("Unique opens", "opens_human", "opens_unique"), ("Opens", None, "opens_total"),
    ("Unique clicks", "clicks_human", "clicks_unique"), ("Clicks", None, "clicks_total"),
    ("Open rate", "human_open_rate", "open_rate"), ("Click-through rate", "human_ctr", "ctr"),
    ("Click-to-open rate", "human_ctor", "ctor"),
    ("Unsubscribes", "unsubscribes", None), ("Complaints", "complaints", None),
    ("Conversions", "conversions", None), ("Revenue", "revenue", None), ("Cost", "cost", None),
    ("ROI", "roi", None), ("ROAS", "roas", None), ("CPA", "cpa", None),
]
RATES = ("open_rate", "human_open_rate", "ctr", "human_ctr", "ctor", "human_ctor")


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key in RATES:
        return f"{value:.1%}"
    if key in ("roi", "roas"):
        return f"{value:.2f}×"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _cell(r: dict[str, Any], human: str | None, total: str | None) -> str:
    """Human figure first, the total (machine-flagged included) after it when it differs."""
    if human and total:
        h, t = _fmt(human, r.get(human)), _fmt(total, r.get(total))
        return h if h == t else f"{h} [dim]({t} all)[/dim]"
    key = human or total or ""
    return _fmt(key, r.get(key))


def _columns(reports: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    cols = []
    for r in reports:
        cols.append((f"{r['kind']}\n{r['name']}", r))
        cols += [(f"variant\n{v['variant']}", v) for v in r.get("variants") or []]
        for step in r.get("steps") or []:
            if "sent" in step:
                cols.append((f"step\n{step['step_id']}", step))
                cols += [(f"{step['step_id']}\n{v['variant']}", v)
                         for v in step.get("variants") or []]
    return cols


def print_reports(reports: list[dict[str, Any]]) -> None:
    """The terminal table: human figures, totals in brackets; then decisions and lift."""
    table = Table(title="Reach report (human figures; all engagement in brackets)",
                  show_lines=False)
    table.add_column("")
    cols = _columns(reports)
    for title, _ in cols:
        table.add_column(title, justify="right")
    for label, human, total in ROWS:
        table.add_row(label, *(_cell(r, human, total) for _, r in cols))
    console.print(table)
    for r in reports:
        decisions = [("", r.get("decision"))] + [
            (f" step {s['step_id']}", s.get("decision")) for s in r.get("steps") or []]
        for where, d in decisions:
            if d:
                console.print(f"[bold]{r['name']}{where}[/bold] A/B: {d['sentence']}")
        h = r.get("holdout")
        if h:
            console.print(
                f"[bold]{r['name']}[/bold] holdout: treated {h['treated_rate']:.2%} vs held "
                f"out {h['holdout_rate']:.2%}, lift {h['lift']:+.2%} "
                f"[{h['lift_ci_low']:+.2%}, {h['lift_ci_high']:+.2%}], p={h['p_value']:.3g}")


@handle_errors
def report(
    name: str = typer.Argument(None, help="Campaign or journey (default: all)."),
    as_json: bool = typer.Option(False, "--json"),
    csv_out: Path = typer.Option(None, "--csv", help="Write a CSV file (one row per level)."),
    html_out: Path = typer.Option(None, "--html", help="Write a self-contained HTML page."),
    window: str = typer.Option(None, "--window",
                               help="Attribution window, e.g. 7d (default: the goal's within)."),
    basis: str = typer.Option(None, "--attribution",
                              help="click_or_delivery (default), click or delivery."),
) -> None:
    """Delivery, engagement, conversions, revenue and ROI."""
    from reports.campaign import all_sources, report_for

    eng = engine()
    sources = all_sources(eng)
    if name:
        sources = [s for s in sources if s[1] == name]
        if not sources:
            raise ReachError("R202", f"nothing has been sent for {name!r} yet",
                             hint="run it first with `reach run`")
    reports = [report_for(eng, kind, source, within=window, basis=basis,
                          with_timeline=bool(html_out)) for kind, source in sources]
    if csv_out:
        from reports.export import write_csv

        write_csv(reports, csv_out)
    if html_out:
        from reports.html import render_html

        html_out.write_text(render_html(reports), encoding="utf-8")
    if as_json:
        print(json.dumps(reports if not name else reports[0], default=str, indent=2))
    elif not reports:
        console.print("Nothing sent yet.")
    else:
        print_reports(reports)


@handle_errors
def demo(
    directory: Path = typer.Argument(None, help="Folder for the demo project (default: temp)."),
    contacts: int = typer.Option(200, "--contacts", help="Sample contacts to generate."),
) -> None:
    """The whole loop on embedded defaults: init, import, validate, send, track, report."""
    from reach.demo import run_demo

    run_demo(directory, contacts=contacts)
