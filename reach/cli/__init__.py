"""The ``reach`` command line (Typer). Prefect is imported only by commands that run flows."""

from __future__ import annotations

from pathlib import Path

import typer

from reach.cli import (
    data_cmds,
    deploy_cmds,
    journey_cmds,
    project_cmds,
    run_cmds,
    serve_cmds,
)
from reach.cli.common import state

app = typer.Typer(
    name="reach",
    help="Marketing automation as code: segments, campaigns and journeys in YAML.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    project: Path = typer.Option(
        Path("."), "--project", "-p", help="Project folder (default: current directory).",
        envvar="REACH_PROJECT_DIR", file_okay=False,
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's own logs."),
) -> None:
    state.project = project
    state.verbose = verbose


project_cmds.register(app)
data_cmds.register(app)
run_cmds.register(app)
serve_cmds.register(app)
journey_cmds.register(app)
deploy_cmds.register(app)


def main() -> None:
    app()
