"""Commands on the project's files: init, validate, schema, graph."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from reach.cli.common import console, err_console, handle_errors, settings, state
from reach.errors import ReachError, ValidationFailed


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("validate")(validate)
    app.command("schema")(schema)


@handle_errors
def init(directory: Path = typer.Argument(..., help="Folder to create the project in.")) -> None:
    """Scaffold a working sample project with a fresh random secret key."""
    from reach.scaffold import InitError, write_project

    try:
        write_project(directory)
    except InitError as exc:
        raise ReachError("C601", str(exc), hint="pass a new or empty folder") from exc
    console.print(f"[green]Created[/green] a Reach project in {directory}")
    console.print(f"  next: cd {directory} && reach contacts import contacts.csv && "
                  "reach validate && reach run campaigns/autumn-newsletter.yaml")


@handle_errors
def validate(
    paths: list[Path] = typer.Argument(None, help="Files to check (default: the whole project)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable diagnostics."),
) -> None:
    """Check every YAML file and template; exit 1 with file:line:col errors."""
    from reach.project import load_project

    cfg = settings()
    project = load_project(cfg, [p.resolve() for p in paths] if paths else None)
    if as_json:
        print(json.dumps({"ok": project.ok, "diagnostics": [d.to_dict()
                                                            for d in project.diagnostics]}))
        raise typer.Exit(0 if project.ok else 1)
    if not project.ok:
        raise ValidationFailed(project.diagnostics)
    counts = (f"{len(project.segments)} segment(s), {len(project.campaigns)} campaign(s), "
              f"{len(project.journeys)} journey(s)")
    console.print(f"[green]✓[/green] {counts}: no errors")


@handle_errors
def schema(
    out: Path = typer.Option(Path(".reach/schema"), "--out", "-o",
                             help="Folder for the JSON Schema files."),
) -> None:
    """Write the JSON Schema of segment, campaign and journey files (for editors)."""
    from reach.project import _spec_model

    folder = out if out.is_absolute() else state.project / out
    folder.mkdir(parents=True, exist_ok=True)
    for kind in ("segment", "campaign", "journey"):
        try:
            model = _spec_model(kind)
        except ImportError:
            err_console.print(f"skipped {kind}: not available")
            continue
        data = model.model_json_schema(by_alias=True)
        data["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        data["title"] = f"Reach {kind} file"
        (folder / f"{kind}.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
        console.print(f"wrote {folder / f'{kind}.json'}")
