"""Commands on data: contacts, events, segments."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table
from sqlalchemy import true

from audiences.contacts import ImportReport
from reach.cli.common import console, engine, err_console, handle_errors, progress_bar, settings
from reach.errors import ReachError, ValidationFailed

contacts_app = typer.Typer(help="Import, export and erase contacts.", no_args_is_help=True)
events_app = typer.Typer(help="Import behavioural events.", no_args_is_help=True)
segment_app = typer.Typer(help="Inspect segments.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(contacts_app, name="contacts")
    app.add_typer(events_app, name="events")
    app.add_typer(segment_app, name="segment")


def _print_report(report: ImportReport, label: str) -> None:
    duplicates = f", {report.duplicates} already there" if report.duplicates else ""
    console.print(f"[green]{label}:[/green] {report.inserted} new, {report.updated} updated, "
                  f"{report.rejected_count} rejected{duplicates}")
    for row in report.rejected[:50]:
        err_console.print(f"  line {row.line}: {row.reason}", markup=False)
    if report.rejected_count > 50:
        err_console.print(f"  … and {report.rejected_count - 50} more")


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return max(0, sum(1 for _ in fh) - (1 if path.suffix == ".csv" else 0))


@contacts_app.command("import")
@handle_errors
def contacts_import(file: Path = typer.Argument(..., exists=True, dir_okay=False)) -> None:
    """Import contacts from CSV or JSON lines; upsert by email / external_id."""
    from audiences.contacts import import_contacts

    eng = engine()
    with progress_bar("Importing contacts", _count_lines(file)) as advance:
        report = import_contacts(eng, file, progress=advance)
    _print_report(report, "Contacts")


@contacts_app.command("export")
@handle_errors
def contacts_export(
    out: Path = typer.Argument(..., help="Output file (.csv or .jsonl)"),
    segment: str | None = typer.Option(None, "--segment", "-s",
                                       help="Only the members of this segment."),
) -> None:
    """Export every contact (or a segment's members) with attributes and statuses."""
    from audiences.compiler import count, segment_clause
    from audiences.contacts import export_contacts

    fmt = "jsonl" if out.suffix in (".jsonl", ".ndjson") else "csv"
    where = None
    if segment is not None:
        _, project = _segment(segment)
        segs = project.segment_specs()
        where = segment_clause(segs[segment], segments=segs)
    eng = engine()
    with eng.connect() as conn:
        total = count(conn, true() if where is None else where)
    with progress_bar("Exporting contacts", total) as advance:
        written = export_contacts(eng, out, fmt=fmt, where=where, progress=advance)
    console.print(f"exported {written} contacts to {out}")


@contacts_app.command("delete")
@handle_errors
def contacts_delete(email: str = typer.Option(..., "--email", help="Address to erase.")) -> None:
    """Erase a contact's personal data (privacy request); aggregate counts are kept."""
    from audiences.contacts import erase_contact

    if not erase_contact(engine(), email):
        raise ReachError("I501", f"no contact with email {email!r}")
    console.print(f"erased {email}")


@events_app.command("import")
@handle_errors
def events_import(file: Path = typer.Argument(..., exists=True, dir_okay=False)) -> None:
    """Import JSON lines of {contact, type, occurred_at, properties, id}."""
    from audiences.events import import_events

    eng = engine()
    with progress_bar("Importing events", _count_lines(file)) as advance:
        report = import_events(eng, file, progress=advance)
    _print_report(report, "Events")


def _segment(name: str):  # type: ignore[no-untyped-def]
    from reach.project import hint_for, load_project

    cfg = settings()
    project = load_project(cfg)
    if not project.ok:
        raise ValidationFailed(project.diagnostics)
    if name not in project.segments:
        raise ReachError("R202", f"segment {name!r} not found",
                         hint=hint_for(name, list(project.segments), "segments"))
    return cfg, project


@segment_app.command("count")
@handle_errors
def segment_count(
    name: str,
    as_json: bool = typer.Option(False, "--json"),
    explain: bool = typer.Option(False, "--explain", help="Show the SQL and the query plan."),
) -> None:
    """How many contacts are in a segment (and how many can be emailed / texted)."""
    from audiences.compiler import count, segment_clause

    cfg, project = _segment(name)
    segs = project.segment_specs()
    where = segment_clause(segs[name], segments=segs)
    eng = engine(cfg)
    with eng.connect() as conn:
        total = count(conn, where)
        email = count(conn, where, channel="email")
        sms = count(conn, where, channel="sms")
        if as_json:
            print(json.dumps({"segment": name, "count": total, "email": email, "sms": sms}))
            return
        console.print(f"[bold]{name}[/bold]: {total} contacts ({email} reachable by email, "
                      f"{sms} by SMS)")
        if explain:
            _print_explain(conn, where)


def _print_explain(conn, where) -> None:  # type: ignore[no-untyped-def]
    from audiences.compiler import explain as explain_sql

    sql, plan = explain_sql(conn, where)
    console.print("[bold]SQL[/bold]")
    console.print(sql, markup=False, highlight=False)
    console.print("[bold]Plan[/bold]")
    console.print(plan, markup=False, highlight=False)


@segment_app.command("show")
@handle_errors
def segment_show(
    name: str,
    limit: int = typer.Option(10, "--limit", "-n"),
    explain: bool = typer.Option(False, "--explain", help="Show the SQL and the query plan."),
) -> None:
    """Size, a sample of members, and with --explain the SQL and its plan."""
    from audiences.compiler import audience_query, count, segment_clause

    cfg, project = _segment(name)
    segs = project.segment_specs()
    where = segment_clause(segs[name], segments=segs)
    eng = engine(cfg)
    with eng.connect() as conn:
        total = count(conn, where)
        rows = conn.execute(audience_query(where, None, limit=limit)).mappings().all()
        table = Table(title=f"{name}: {total} contacts (first {min(limit, total)})")
        for col in ("id", "email", "first_name", "last_name", "country", "email_status"):
            table.add_column(col)
        for row in rows:
            table.add_row(*(str(row.get(c) or "") for c in
                            ("id", "email", "first_name", "last_name", "country",
                             "email_status")))
        console.print(table)
        if explain:
            _print_explain(conn, where)
