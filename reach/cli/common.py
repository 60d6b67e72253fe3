"""What every command shares: the project folder, settings, the database, error output."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from reach.errors import ReachError, ValidationFailed

# soft_wrap: a long file:line:col line stays one line (editors and grep read it).
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


class State:
    project: Path = Path(".")
    verbose: bool = False


state = State()


def settings(**overrides: Any) -> Any:
    from reach.settings import load_settings

    try:
        return load_settings(state.project, **overrides)
    except Exception as exc:  # pydantic ValidationError of reach.toml / REACH_* values
        raise ReachError("C601", f"invalid settings: {exc}",
                         hint="check reach.toml and REACH_* environment variables") from exc


def engine(cfg: Any = None) -> Any:
    from reach.db import connect

    cfg = cfg or settings()
    return connect(cfg.resolved_database_url)


def quiet_prefect() -> None:
    """Prefect's own logs stay quiet unless --verbose; set before Prefect is imported."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The ephemeral API server's first start on a fresh machine (bytecode compiled, its
    # database created and migrated) took over Prefect's default 20 s here, and `make demo`
    # failed with "Timed out while attempting to connect to ephemeral Prefect API server".
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    if not state.verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("PREFECT_LOGGING_SERVER_LEVEL", "ERROR")
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "ERROR")


def handle_errors(fn: F) -> F:
    """User errors exit 1 with their code and hint; nothing else is swallowed."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValidationFailed as exc:
            root = state.project.resolve()
            err_console.print(exc.render(root), markup=False, highlight=False)
            err_console.print(f"[red]{len(exc.diagnostics)} error(s)[/red]; nothing was sent.")
            raise typer.Exit(1) from None
        except ReachError as exc:
            err_console.print(str(exc), markup=False, highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on a terminal; plain start/end lines in logs."""
    if not sys.stderr.isatty():
        err_console.print(f"{label}: {total if total is not None else '?'} to do")
        done = [0]

        def advance_plain(n: int) -> None:
            done[0] += n

        yield advance_plain
        err_console.print(f"{label}: {done[0]} done")
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(label, total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)

        yield advance
