"""Fast tests of the scale-out pieces that need no Prefect server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from campaigns.channels.base import PermanentSendError, TransientSendError
from campaigns.channels.errors import ConfigurationSendError
from campaigns.fanout import group_ranges, is_transient
from reach.errors import ReachError

BIN = Path(sys.executable).parent


def test_transient_errors_are_retried_terminal_ones_never() -> None:
    assert is_transient(TransientSendError("421 try later", 421))
    assert is_transient(ConnectionResetError("peer reset"))
    assert is_transient(TimeoutError())
    assert is_transient(OperationalError("SELECT 1", {}, Exception("server closed")))
    assert not is_transient(PermanentSendError("550 no such user", 550))
    assert not is_transient(ConfigurationSendError("535 auth failed", 535, hint="password"))
    assert not is_transient(ReachError("C601", "bad transport", "fix it"))
    assert not is_transient(ValueError("a bug"))
    assert not is_transient(None)


def test_ranges_are_split_into_contiguous_groups() -> None:
    ranges = [[1, 10], [11, 20], [21, 30], [31, 40], [41, 45]]
    groups = group_ranges(ranges, 2)
    assert groups == [[[1, 10], [11, 20], [21, 30]], [[31, 40], [41, 45]]]
    assert group_ranges(ranges, 9) == [[r] for r in ranges]
    assert group_ranges([], 3) == []


def _app() -> typer.Typer:
    from reach.cli import app

    return app


def test_deploy_without_a_server_says_what_to_set(tmp_path: Path, monkeypatch) -> None:
    from reach.scaffold import write_project

    root = write_project(tmp_path / "acme", contacts=3)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    done = subprocess.run([str(BIN / "reach"), "--project", str(root), "deploy"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "error[C601]" in done.stderr or "C601" in done.stderr
    assert "PREFECT_API_URL" in done.stderr and "prefect server start" in done.stderr


@pytest.mark.usefixtures("prefect_harness")
def test_scheduler_once_ticks_due_campaigns(tmp_path: Path, db_url: str, monkeypatch) -> None:
    from audiences.contacts import import_contacts
    from reach.db import connect
    from reach.scaffold import write_project

    root = write_project(tmp_path / "acme", contacts=40)
    news = root / "campaigns" / "autumn-newsletter.yaml"
    news.write_text(news.read_text() + 'schedule: "2020-01-01T09:00:00+00:00"\n')
    monkeypatch.setenv("REACH_DATABASE_URL", db_url)
    monkeypatch.delenv("REACH_EMAIL_TRANSPORT", raising=False)
    import_contacts(connect(db_url), root / "contacts.csv")
    result = CliRunner().invoke(_app(), ["--project", str(root), "scheduler", "--once"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "tick: " in result.output and "scheduler: stopped" in result.output
    from sqlalchemy import func, select

    from reach.db.schema import messages

    with connect(db_url).connect() as conn:
        sent = conn.execute(select(func.count()).where(
            messages.c.source_name == "autumn-newsletter", messages.c.status == "sent")).scalar()
    assert sent == 40  # the due one-off campaign ran in the tick
