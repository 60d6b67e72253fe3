"""Run the tracking server under uvicorn (``reach serve``).

uvloop and httptools are used when installed (``uvicorn[standard]``): the pixel route is
two to three times faster on them than on asyncio and h11. With ``workers > 1`` uvicorn
starts processes that each import the app, so it needs an import string:
:func:`app_from_env` builds the app from the project folder in ``REACH_PROJECT_DIR``.
uvicorn's own graceful shutdown (SIGTERM/SIGINT) stops accepting, answers the requests in
flight, then runs the lifespan exit, which flushes the queue.

``python -m tracking.server [--project DIR] [--host H] [--port P] [--workers N]`` runs it
without the CLI.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from reach.settings import Settings, load_settings

PROJECT_ENV = "REACH_PROJECT_DIR"


def _fast_stack() -> dict[str, str]:
    """uvloop + httptools when importable, otherwise uvicorn's pure-Python defaults."""
    return {
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
    }


def app_from_env() -> Starlette:
    """The app for the project in ``$REACH_PROJECT_DIR`` (uvicorn factory, one per worker)."""
    settings = load_settings(os.environ.get(PROJECT_ENV) or ".")
    return build_app(settings)


def build_app(settings: Settings) -> Starlette:
    """The app with the project's database and the campaigns' view-in-browser renderer."""
    from reach.db import connect
    from tracking.app import create_app

    engine = connect(settings.resolved_database_url)
    try:
        from campaigns.view import view_renderer
    except ImportError:  # /v/ answers 404 without it
        return create_app(settings, engine, writer=settings.tracking_writer)
    return create_app(settings, engine, view_renderer=view_renderer(settings, engine),
                      writer=settings.tracking_writer)


def uvicorn_options(host: str, port: int, workers: int = 1) -> dict[str, Any]:
    """The uvicorn settings Reach uses (shared with the benchmark)."""
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "access_log": False,  # one log line per pixel would cost more than the pixel
        "log_level": "warning",
        "timeout_graceful_shutdown": 30,
        "server_header": False,
        "lifespan": "on",
        **_fast_stack(),
    }


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8787,
          workers: int = 1) -> None:
    """Serve the tracking endpoints of ``settings``'s project until SIGTERM or Ctrl-C."""
    import uvicorn

    options = uvicorn_options(host, port, workers)
    if workers > 1:
        os.environ[PROJECT_ENV] = str(Path(settings.project_dir).resolve())
        uvicorn.run("tracking.server:app_from_env", factory=True, **options)
        return
    uvicorn.run(build_app(settings), **options)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m tracking.server``."""
    parser = argparse.ArgumentParser(prog="python -m tracking.server",
                                     description="Reach tracking server")
    parser.add_argument("--project", default=os.environ.get(PROJECT_ENV, "."))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    serve(load_settings(args.project), args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
