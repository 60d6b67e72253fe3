"""Shared fixtures: a fresh database per test on SQLite, or on PostgreSQL when
``REACH_TEST_DATABASE_URL`` is set (each test gets its own schema, dropped afterwards)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")

PG_URL = os.environ.get("REACH_TEST_DATABASE_URL", "")


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database for one test."""
    if not PG_URL:
        yield f"sqlite:///{tmp_path / 'reach.db'}"
        return
    from reach.db.engine import make_engine

    schema = f"t_{secrets.token_hex(6)}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated engine on the test's database."""
    from reach.db import connect
    from reach.db.engine import dispose_all

    eng = connect(db_url)
    yield eng
    dispose_all()



@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API for the whole session (~7 s), not one per flow run."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def project(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh sample project with 40 contacts on the test database."""
    from reach.scaffold import write_project

    root = write_project(tmp_path / "acme", contacts=40)
    monkeypatch.setenv("REACH_DATABASE_URL", db_url)
    monkeypatch.delenv("REACH_EMAIL_TRANSPORT", raising=False)
    monkeypatch.delenv("REACH_NOW", raising=False)
    return root


@pytest.fixture
def cli(project: Path):  # type: ignore[no-untyped-def]
    """Run `reach --project PROJECT ...` in-process; returns the click Result."""
    from reach.cli import app

    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["--project", str(project), *args], catch_exceptions=False)

    return invoke
