"""A journey walked through days with REACH_NOW: every step kind on the happy paths."""

from __future__ import annotations

import json

from sqlalchemy import insert, select

from reach.db.schema import contacts, engagements, journey_steps, messages
from tests.journeys.conftest import CONTACTS, Project

DAY0 = "2026-03-02T10:00:00+00:00"
JOURNEY = """
journey: j
entry: {segment: trials}
goal: {event: purchase, within: 14d}
settings:
  from: "Acme <hello@acme.test>"
steps:
  - id: welcome
    email: {template: templates/welcome.mjml, subject: "Welcome {{ contact.first_name }}"}
  - id: pause
    wait: 2d
  - id: engaged
    branch:
      - if: {clicked: welcome}
        steps:
          - {id: tips, email: {template: templates/tips.mjml, subject: "3 tips"}}
      - else:
          - {id: nudge, sms: {template: templates/hello.sms}}
  - id: wait-buy
    wait_for: {event: purchase, timeout: 3d}
    on_timeout:
      - {id: last-call, email: {template: templates/last.mjml, subject: "Last call"}}
      - {id: bye, exit: timed_out}
  - id: tag
    update: {attributes: {onboarded: true}}
  - id: crm
    webhook: {url: "https://crm.acme.test/hooks/onboarded", body: {source: reach}}
"""


def test_every_step_kind_walked_through_days(project: Project) -> None:
    project.journey(JOURNEY)
    project.import_contacts(CONTACTS, now=DAY0)
    first = project.run(now=DAY0)
    assert first["enrolled"] == 2 and first["sent"] == 2  # ada, bob: trials; cy is pro
    assert project.sent() == [("ada@example.com", "welcome", None, "sent"),
                              ("bob@example.com", "welcome", None, "sent")]
    # Ada clicks her welcome mail (what the tracking server records); a scanner clicks Bob's.
    with project.engine().begin() as conn:
        ids = dict(conn.execute(select(contacts.c.email, messages.c.id).join(
            messages, messages.c.contact_id == contacts.c.id)).all())
        for email, machine in (("ada@example.com", False), ("bob@example.com", True)):
            conn.execute(insert(engagements).values(
                message_id=ids[email], contact_id=1 if email.startswith("ada") else 2,
                kind="click", occurred_at=project_time("2026-03-02T12:00:00"), machine=machine))
    # Nothing is due before the wait is over: a tick on day 1 advances nobody.
    assert project.run(now="2026-03-03T10:00:00+00:00")["advanced"] == 0
    project.run(now="2026-03-04T10:00:00+00:00")
    assert project.sent()[2:] == [("ada@example.com", "tips", None, "sent"),
                                  ("bob@example.com", "nudge", None, "sent")]
    sms = (project.root / "outbox" / "sms" / "messages.jsonl").read_text().splitlines()
    assert "Hi Bob, hello from Acme" in json.loads(sms[0])["body"]
    # Ada buys on day 3: the next tick moves her on; Bob times out on day 5.
    project.events([{"contact": "ada@example.com", "type": "purchase",
                     "occurred_at": "2026-03-05T09:00:00+00:00", "properties": {"amount": 10}}],
                   now="2026-03-05T09:00:00+00:00")
    project.run(now="2026-03-05T10:00:00+00:00")
    states = project.states()
    assert states["ada@example.com"]["status"] == "done"
    assert states["bob@example.com"]["step_id"] == "wait-buy"
    project.run(now="2026-03-07T10:00:00+00:00")
    states = project.states()
    assert (states["bob@example.com"]["status"], states["bob@example.com"]["exit_reason"]) == \
        ("exited", "timed_out")
    assert project.sent()[4:] == [("ada@example.com", "crm", None, "sent"),
                                  ("bob@example.com", "last-call", None, "sent")]
    # update wrote Ada's attribute; Bob left before `tag`.
    attrs = {r["email"]: r["attributes"] for r in project.rows(
        select(contacts.c.email, contacts.c.attributes))}
    assert attrs["ada@example.com"]["onboarded"] is True
    assert "onboarded" not in attrs["bob@example.com"]
    call = json.loads((project.root / "outbox" / "webhook" / "calls.jsonl").read_text())
    assert call["url"] == "https://crm.acme.test/hooks/onboarded"
    body = call["body"] if isinstance(call["body"], dict) else json.loads(call["body"])
    assert (body["step"], body["journey"], body["entry"], body["source"]) == ("crm", "j", 1,
                                                                             "reach")
    assert body["contact"]["email"] == "ada@example.com"
    # Later ticks change nothing: nobody gets a step twice.
    project.run(now="2026-03-20T10:00:00+00:00")
    assert len(project.sent()) == 6
    recorded = project.rows(select(journey_steps.c.contact_id, journey_steps.c.step_id))
    assert len(recorded) == len({(r["contact_id"], r["step_id"]) for r in recorded})


def project_time(text: str):  # noqa: ANN201 - tiny helper
    from reach.clock import parse_instant

    return parse_instant(text)
