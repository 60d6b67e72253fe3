"""The send ledger against a real SMTP server (aiosmtpd on loopback): retries, bounces,
dropped connections, a killed sender — and never a duplicate."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from reach.db.schema import consent_changes, contacts, messages
from tests.channels.servers import RecordingHandler, start_smtp


def _setup(project: Path, cli, n: int = 40):  # type: ignore[no-untyped-def]
    from reach.db import connect
    from reach.scaffold import _write_contacts
    from reach.settings import load_settings

    if n != 40:
        _write_contacts(project / "contacts.csv", n, seed=5)
    assert cli("contacts", "import", str(project / "contacts.csv")).exit_code == 0
    settings = load_settings(project)
    return settings, connect(settings.resolved_database_url)


def _plan(settings, name: str = "autumn-newsletter"):  # type: ignore[no-untyped-def]
    from campaigns.plan import compile_campaign
    from reach.project import load_project

    return compile_campaign(load_project(settings), name)


def _emails(engine, where=None) -> list[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        q = select(contacts.c.email).order_by(contacts.c.id)
        return [r[0] for r in conn.execute(q if where is None else q.where(where))]


@pytest.fixture
def smtp(monkeypatch):  # type: ignore[no-untyped-def]
    handler = RecordingHandler()
    server = start_smtp(handler)
    monkeypatch.setenv("REACH_EMAIL_TRANSPORT", f"smtp://127.0.0.1:{server.port}?pool=2")
    monkeypatch.setenv("REACH_RETRY_BASE_SECONDS", "0")
    yield handler
    server.stop()


def test_451_retried_then_delivered_550_bounced_and_suppressed(project, cli, smtp) -> None:
    from campaigns.run import run_plan

    settings, engine = _setup(project, cli)
    everyone = _emails(engine)
    later, gone = everyone[3], everyone[7]
    smtp.rcpt_replies[later] = ["451 4.3.0 Try again later"]
    smtp.rcpt_replies[gone] = ["550 5.1.1 No such user"]

    summary = run_plan(settings, engine, _plan(settings))
    received = Counter(r for m in smtp.messages for r in m.rcpt_tos)
    assert received[later] == 1 and gone not in received
    assert all(n == 1 for n in received.values()) and len(received) == 39
    assert summary.sent == 39 and summary.bounced == 1 and summary.status == "done"
    with engine.connect() as conn:
        row = conn.execute(select(messages).where(messages.c.to_address == later)).one()
        assert (row.status, row.attempts) == ("sent", 2)
        status = conn.execute(select(contacts.c.email_status)
                              .where(contacts.c.email == gone)).scalar()
        assert status == "bounced"
        history = conn.execute(select(consent_changes.c.source, consent_changes.c.status)).all()
        assert ("bounce", "bounced") in [tuple(h) for h in history]

    # The bounced address is suppressed in every later campaign.
    smtp.messages.clear()
    run_plan(settings, engine, _plan(settings, "black-friday"))
    assert gone not in {r for m in smtp.messages for r in m.rcpt_tos}


def test_connection_dropped_mid_batch_resumes_without_duplicates(project, cli, smtp) -> None:
    from campaigns.run import run_plan

    settings, engine = _setup(project, cli)
    everyone = _emails(engine)
    dropped = everyone[10]
    smtp.drop_in_data.add(dropped)  # the server queues it but the reply is lost
    summary = run_plan(settings, engine, _plan(settings))
    received = Counter(r for m in smtp.messages for r in m.rcpt_tos)
    assert all(n == 1 for n in received.values())
    assert set(received) == set(everyone)  # everyone else went out on a new connection
    assert summary.unknown == 1  # reported, never resent blindly
    again = run_plan(settings, engine, _plan(settings))
    assert again.sent == 0
    assert Counter(r for m in smtp.messages for r in m.rcpt_tos)[dropped] == 1


SENDER = """
import sys
from campaigns.plan import compile_campaign
from campaigns.run import run_plan
from reach.db import connect
from reach.project import load_project
from reach.settings import load_settings
settings = load_settings(sys.argv[1])
engine = connect(settings.resolved_database_url)
plan = compile_campaign(load_project(settings), "autumn-newsletter")
print(run_plan(settings, engine, plan).__dict__, flush=True)
"""


class SlowHandler(RecordingHandler):
    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.004)
        return await super().handle_DATA(server, session, envelope)


@dataclass
class KillingHandler(RecordingHandler):
    """Kills the sender while it waits for the reply to the ``kill_at``-th body: that
    message is on the wire and not accepted, so its outcome is truly unknown to the sender."""

    pid: int = 0
    kill_at: int = 0
    killed_for: str = ""

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.pid and len(self.messages) + 1 == self.kill_at and not self.killed_for:
            self.killed_for = envelope.rcpt_tos[0]
            os.kill(self.pid, signal.SIGKILL)
            return "451 4.3.0 the sender went away"
        return await super().handle_DATA(server, session, envelope)


def _kill_and_rerun(project: Path, settings, handler, server,  # type: ignore[no-untyped-def]
                    pool: int, wait_for: int | None) -> None:
    env = {**os.environ, "REACH_EMAIL_TRANSPORT": f"smtp://127.0.0.1:{server.port}?pool={pool}",
           "REACH_DATABASE_URL": settings.database_url}
    proc = subprocess.Popen([sys.executable, "-c", SENDER, str(project)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if isinstance(handler, KillingHandler):
        handler.pid = proc.pid
    deadline = time.monotonic() + 120
    while wait_for and len(handler.messages) < wait_for and time.monotonic() < deadline:
        time.sleep(0.05)
    if wait_for:
        os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=120) == -signal.SIGKILL
    first = len(handler.messages)
    assert 0 < first < 3000, "the kill must land mid-send"
    # Run again (same machine: the dead sender's rows are settled at once, from its journal).
    rerun = subprocess.run([sys.executable, "-c", SENDER, str(project)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]


def _outcome(engine, handler):  # type: ignore[no-untyped-def]
    received = Counter(r for m in handler.messages for r in m.rcpt_tos)
    assert max(received.values()) == 1  # zero duplicates
    with engine.connect() as conn:
        unknown = {r[0] for r in conn.execute(
            select(messages.c.to_address).where(messages.c.status == "unknown"))}
        statuses = dict(conn.execute(select(messages.c.status, func.count())
                                     .group_by(messages.c.status)).all())
    assert statuses.get("sent", 0) + statuses.get("unknown", 0) == 3000
    return set(_emails(engine)) - set(received), unknown


def test_kill_9_mid_send_missing_are_exactly_the_unknown(project, cli) -> None:
    """A 3,000-contact send, killed while message 700 is on the wire (pool=1): after the
    re-run everyone else has exactly one copy, and the one missing is the one unknown."""
    settings, engine = _setup(project, cli, n=3000)
    handler = KillingHandler(kill_at=700)
    server = start_smtp(handler)
    try:
        _kill_and_rerun(project, settings, handler, server, pool=1, wait_for=None)
    finally:
        server.stop()
    missing, unknown = _outcome(engine, handler)
    assert missing == unknown == {handler.killed_for}


def test_kill_9_at_a_random_moment_never_duplicates(project, cli) -> None:
    """Killed at an arbitrary moment with two connections: whoever did not get the message
    is reported unknown, and unknown is at most what was on the wire (one per connection);
    an unknown that did arrive was accepted in the instant between the server's reply and
    the sender reading it — the one case no sender can tell."""
    settings, engine = _setup(project, cli, n=3000)
    handler = SlowHandler()
    server = start_smtp(handler)
    try:
        _kill_and_rerun(project, settings, handler, server, pool=2, wait_for=600)
    finally:
        server.stop()
    missing, unknown = _outcome(engine, handler)
    assert missing <= unknown
    assert len(unknown) <= 2


def test_error_rate_threshold_pauses_and_run_resumes(project, cli, smtp, monkeypatch) -> None:
    from campaigns.run import campaign_status, run_plan

    monkeypatch.setenv("REACH_BATCH_SIZE", "10")
    monkeypatch.setenv("REACH_RETRY_BASE_SECONDS", "30")
    monkeypatch.setenv("REACH_NOW", "2026-11-23T10:00:00+00:00")  # retries wait for the clock
    settings, engine = _setup(project, cli, n=60)
    for email in _emails(engine):
        smtp.rcpt_replies[email] = ["451 4.7.1 Throttled, try later"] * 3  # a provider in trouble
    first = run_plan(settings, engine, _plan(settings))
    status, reason = campaign_status(engine, "autumn-newsletter")
    assert first.status == "paused" and status == "paused"
    assert "100% of the last 20 attempts failed" in reason and "`reach run` resumes" in reason
    assert first.batches == 2 and smtp.messages == []  # stopped early, nothing lost

    smtp.rcpt_replies.clear()  # the provider recovers; an hour later the operator resumes
    monkeypatch.setenv("REACH_NOW", "2026-11-23T11:00:00+00:00")
    again = run_plan(settings, engine, _plan(settings))
    assert again.status == "done" and again.sent == 60
    assert Counter(r for m in smtp.messages for r in m.rcpt_tos) == Counter(_emails(engine))
