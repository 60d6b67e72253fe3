"""`reach tick` as a Prefect flow, signed webhooks over real HTTP, and two ticks at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, text

from campaigns.channels.webhook import verify_signature
from reach import clock
from reach.db.schema import contacts, journey_states, journey_steps, messages
from tests.conftest import PG_URL
from tests.journeys.conftest import CONTACTS, SECRET, Project

T0 = "2026-03-02T10:00:00+00:00"
JOURNEY = """
journey: j
entry: {segment: trials}
settings: {from: "Acme <hello@acme.test>"}
steps:
  - {id: hello, email: {template: templates/welcome.mjml, subject: "Hi {{ contact.first_name }}"}}
  - {id: pause, wait: 1d}
  - {id: tag, update: {attributes: {onboarded: true}}}
"""


def test_reach_tick_runs_every_journey_in_one_flow(project: Project) -> None:
    project.journey(JOURNEY)
    project.journey(JOURNEY.replace("journey: j", "journey: k"), "k")
    project.import_contacts(CONTACTS, now=T0)
    out = project.cli("tick", now=T0).stdout
    assert "j (version" in out and "k (version" in out and "2 entered" in out
    assert len(list((project.root / "outbox/email").glob("*.eml"))) == 4


class _Hook(BaseHTTPRequestHandler):
    calls: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhook_step_posts_a_signed_body(project: Project) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        project.journey(f"""
        journey: j
        entry: {{segment: trials}}
        steps:
          - {{id: crm, webhook: {{url: "{url}"}}}}
        """)
        project.import_contacts(CONTACTS, now=T0)
        project.cli("run", "j", now=T0, env={"REACH_WEBHOOK_TRANSPORT": "webhook"})
        project.cli("run", "j", now="2026-03-03T10:00:00+00:00",
                    env={"REACH_WEBHOOK_TRANSPORT": "webhook"})
    finally:
        server.shutdown()
    assert len(_Hook.calls) == 2
    for headers, body in _Hook.calls:
        assert verify_signature([SECRET], body, headers["X-Reach-Signature"])
    assert {s[3] for s in project.sent()} == {"sent"}


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="needs REACH_TEST_DATABASE_URL (PostgreSQL)")
def test_two_concurrent_ticks_execute_each_step_exactly_once(project: Project) -> None:
    """Two `reach run j` processes (one tick each, no Prefect) at once over 10,000 due
    contacts: FOR UPDATE SKIP LOCKED hands every contact to exactly one of them."""
    n = 10_000
    project.journey(JOURNEY)
    engine = project.engine()
    start = clock.parse_instant(T0)
    with engine.begin() as conn:
        conn.execute(insert(contacts), [
            {"email": f"c{i}@example.com", "first_name": f"C{i}", "attributes": {"plan": "trial"},
             "email_status": "subscribed", "sms_status": "subscribed", "created_at": start,
             "updated_at": start} for i in range(n)])

    def both(at: str) -> list[dict[str, Any]]:
        env = {**os.environ, "REACH_NOW": at, "REACH_BATCH_SIZE": "250"}
        command = [sys.executable, "-m", "reach.cli", "--project", str(project.root),
                   "run", "j", "--json"]
        # A start barrier: process start-up time varies (a loaded CI machine once let the
        # first finish all 10,000 before the second began), so the table is locked until
        # both processes are blocked on it, and then released to both at once.
        with engine.connect() as gate:
            gate.execute(text("LOCK TABLE journey_states IN ACCESS EXCLUSIVE MODE"))
            procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for _ in range(2)]
            _wait_until_blocked(engine, procs, waiting=2)
            gate.commit()
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (_, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err[-2000:]
        return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]

    first = both(T0)
    assert sum(r["advanced"] for r in first) == n  # no contact was claimed by both
    assert all(r["advanced"] > 0 for r in first)  # and both did work
    second = both("2026-03-03T10:00:00+00:00")
    assert sum(r["advanced"] for r in second) == n
    assert sum(r["steps"].get("tag", 0) for r in second) == n
    with engine.connect() as conn:
        per_step = dict(conn.execute(select(journey_steps.c.step_id, func.count())
                                     .group_by(journey_steps.c.step_id)).all())
        assert per_step == {"hello": n, "pause": n, "tag": n}
        assert conn.execute(select(func.count()).select_from(messages)
                            .where(messages.c.status == "sent")).scalar() == n
        assert conn.execute(select(func.count()).select_from(journey_states)
                            .where(journey_states.c.status == "done")).scalar() == n
    assert len(list((project.root / "outbox/email").glob("*.eml"))) == n


def _wait_until_blocked(engine: Engine, procs: list[subprocess.Popen[str]], *,
                        waiting: int) -> None:
    """Wait until `waiting` other sessions of this database wait on a lock (the barrier)."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                 " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
    deadline = time.monotonic() + 120
    with engine.connect() as conn:
        while conn.execute(query).scalar_one() < waiting:
            for p in procs:
                if p.poll() is not None:
                    err = p.stderr.read() if p.stderr else ""
                    raise AssertionError(f"reach exited before the barrier: {err[-2000:]}")
            assert time.monotonic() < deadline, "the two ticks never reached the table"
            conn.rollback()  # a fresh snapshot of pg_stat_activity on the next poll
            time.sleep(0.05)
