"""Rows a tick queues already claimed, and ticks that start helper processes.

A journey tick inserts its email and SMS rows already leased to itself (no claim UPDATE),
under an in-flight journal opened first. These tests kill a tick between queuing and
sending, fail one in between, and drain a journey with two processes on PostgreSQL: every
contact still gets its message exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import func, insert, select

from journeys import parallel, runtime
from journeys.plan import compile_journey
from reach import clock
from reach.db.schema import contacts, journey_steps, messages
from reach.project import load_project
from reach.settings import load_settings
from tests.conftest import PG_URL
from tests.journeys.conftest import CONTACTS, Project

T0 = "2026-03-02T10:00:00+00:00"
JOURNEY = """
journey: j
entry: {segment: trials}
settings: {from: "Acme <hello@acme.test>"}
steps:
  - {id: hello, email: {template: templates/welcome.mjml, subject: "Hi {{ contact.first_name }}"}}
  - {id: text, sms: {body: "Hi {{ contact.first_name }}"}}
  - {id: pause, wait: 1d}
"""

# A tick in its own process that dies (as by kill -9: no cleanup, no finally) right after
# its rows were queued, claimed by it, and before anything was sent.
DIE_BEFORE_SENDING = textwrap.dedent("""
    import os, sys
    from journeys import runtime
    from journeys.plan import compile_journey
    from campaigns.run import worker_id
    from reach.db import connect
    from reach.project import load_project
    from reach.settings import load_settings

    def die(*args, **kwargs):
        os._exit(9)

    runtime._send_new = die
    cfg = load_settings(sys.argv[1])
    plan = compile_journey(load_project(cfg), "j")
    runtime.tick_journey(cfg, connect(cfg.resolved_database_url), plan, owner=worker_id())
""")


def _statuses(project: Project) -> dict[str, int]:
    with project.engine().connect() as conn:
        return dict(conn.execute(select(messages.c.status, func.count())
                                 .group_by(messages.c.status)).all())


def test_a_tick_killed_between_queuing_and_sending_loses_and_repeats_nothing(
        project: Project) -> None:
    project.journey(JOURNEY)
    project.import_contacts(CONTACTS, now=T0)
    dead = subprocess.run([sys.executable, "-c", DIE_BEFORE_SENDING, str(project.root)],
                          env={**os.environ, "REACH_NOW": T0}, capture_output=True, text=True,
                          timeout=120)
    assert dead.returncode == 9, dead.stderr[-2000:]
    # Two trial contacts, an email and an SMS each, claimed by a process that is gone.
    assert _statuses(project) == {"sending": 4}
    journals = list((project.root / ".reach-cache" / "inflight").glob("*.log"))
    assert journals, "the journal was opened before the rows were queued"

    stats = project.run(now="2026-03-02T10:05:00+00:00")
    # The journal showed no attempt: back to the queue and sent now, none 'unknown'.
    assert _statuses(project) == {"sent": 4}
    assert stats["sent"] == 4
    assert len(list((project.root / "outbox/email").glob("*.eml"))) == 2
    sms = (project.root / "outbox/sms/messages.jsonl").read_text().splitlines()
    assert len(sms) == 2
    assert not list((project.root / ".reach-cache" / "inflight").glob("*.log"))


def test_an_error_before_sending_gives_the_queued_rows_back(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.journey(JOURNEY)
    project.import_contacts(CONTACTS, now=T0)
    cfg = load_settings(project.root)
    plan = compile_journey(load_project(cfg), "j")
    engine = project.engine()

    def broken_store(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(runtime, "_store", broken_store)
    with clock.frozen(clock.parse_instant(T0)), pytest.raises(RuntimeError):
        runtime.tick_journey(cfg, engine, plan, owner="h:1:a")
    assert _statuses(project) == {"queued": 4}  # not stuck in 'sending' for the lease
    monkeypatch.undo()
    with clock.frozen(clock.parse_instant("2026-03-02T10:05:00+00:00")):
        stats = runtime.tick_journey(cfg, engine, plan, owner="h:1:b")
    assert _statuses(project) == {"sent": 4}
    assert stats.sent == 4


def test_no_helper_on_sqlite_or_for_a_small_backlog(project: Project) -> None:
    project.journey(JOURNEY)
    project.import_contacts(CONTACTS, now=T0)
    cfg = load_settings(project.root)
    plan = compile_journey(load_project(cfg), "j")
    engine = project.engine()
    with clock.frozen(clock.parse_instant(T0)):
        runtime.prepare_tick(cfg, engine, plan)
        assert parallel.due_backlog(engine, plan, 10) == 2
        assert parallel.helpers_for(cfg, engine, plan, batch_size=1, processes=4) == (
            1 if engine.dialect.name == "postgresql" else 0)
        assert parallel.helpers_for(cfg, engine, plan, batch_size=500, processes=4) == 0


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="needs REACH_TEST_DATABASE_URL (PostgreSQL)")
def test_a_tick_with_helper_processes_sends_each_message_once(project: Project) -> None:
    n = 3_000
    project.journey("\n".join(line for line in JOURNEY.splitlines() if "sms:" not in line))
    engine = project.engine()
    start = clock.parse_instant(T0)
    with engine.begin() as conn:
        conn.execute(insert(contacts), [
            {"email": f"c{i}@example.com", "first_name": f"C{i}", "attributes": {"plan": "trial"},
             "email_status": "subscribed", "sms_status": "subscribed", "created_at": start,
             "updated_at": start} for i in range(n)])
    cfg = load_settings(project.root)
    plan = compile_journey(load_project(cfg), "j")
    with clock.frozen(start):
        runtime.prepare_tick(cfg, engine, plan)
        assert parallel.helpers_for(cfg, engine, plan, batch_size=250, processes=3) == 2
        stats = runtime.tick_journey(cfg, engine, plan, owner="h:1:main", batch_size=250,
                                     processes=3)
    assert stats.advanced == n and stats.sent == n
    assert stats.batches == n // 250
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(messages).where(
            messages.c.status == "sent")).scalar() == n
        assert conn.execute(select(func.count(func.distinct(messages.c.contact_id)))).scalar() == n
        per_step = dict(conn.execute(select(journey_steps.c.step_id, func.count())
                                     .group_by(journey_steps.c.step_id)).all())
    assert per_step == {"hello": n, "pause": n}
    assert len(list((project.root / "outbox/email").glob("*.eml"))) == n
