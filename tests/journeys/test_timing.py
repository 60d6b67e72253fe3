"""Quiet hours, wait until a local time, time zones and frequency caps."""

from __future__ import annotations

from sqlalchemy import select

from reach.clock import as_utc, parse_instant
from reach.db.schema import contacts, journey_states, messages
from tests.journeys.conftest import CONTACTS, Project


def _due(project: Project) -> dict[str, str]:
    q = select(contacts.c.email, journey_states.c.due_at).join(
        contacts, contacts.c.id == journey_states.c.contact_id).where(
        journey_states.c.journey == "j")
    return {r["email"]: as_utc(r["due_at"]).isoformat() for r in project.rows(q)}


def test_quiet_hours_and_wait_until_follow_each_contacts_time_zone(project: Project) -> None:
    project.journey("""
    journey: j
    entry: {segment: everyone}
    settings: {from: "Acme <hello@acme.test>", timezone: contact, quiet_hours: "21:00-08:00"}
    steps:
      - {id: morning, wait: {until: "09:00"}}
      - {id: hello, email: {template: templates/welcome.mjml, subject: Hi}}
      - {id: later, wait: 14h}
      - {id: again, email: {template: templates/tips.mjml, subject: Tips}}
    """)
    project.import_contacts(CONTACTS, now="2026-03-02T00:00:00+00:00")
    # 10:00 UTC: London 10:00, New York 05:00, Tokyo 19:00.
    project.run(now="2026-03-02T10:00:00+00:00")
    assert _due(project) == {"ada@example.com": "2026-03-03T09:00:00+00:00",
                             "bob@example.com": "2026-03-02T14:00:00+00:00",
                             "cy@example.com": "2026-03-03T00:00:00+00:00"}
    project.run(now="2026-03-02T14:00:00+00:00")
    project.run(now="2026-03-03T00:00:00+00:00")
    project.run(now="2026-03-03T09:00:00+00:00")
    assert sorted(s[:2] for s in project.sent()) == [
        ("ada@example.com", "hello"), ("bob@example.com", "hello"), ("cy@example.com", "hello")]
    # 14h later falls in quiet hours for Bob (04:00 New York): held until 08:00 local.
    project.run(now="2026-03-03T04:00:00+00:00")
    due = _due(project)
    assert due["bob@example.com"] == "2026-03-03T13:00:00+00:00"  # 08:00 EST
    project.run(now="2026-03-03T13:00:00+00:00")
    sent_at = {r["email"]: as_utc(r["sent_at"]) for r in project.rows(
        select(contacts.c.email, messages.c.sent_at).join(
            contacts, contacts.c.id == messages.c.contact_id).where(
            messages.c.step_id == "again"))}
    assert sent_at["bob@example.com"] == parse_instant("2026-03-03T13:00:00+00:00")


def test_frequency_cap_counts_other_journeys_and_postpones(project: Project) -> None:
    other = """
    journey: other
    entry: {segment: trials}
    settings: {from: "Acme <hello@acme.test>"}
    steps:
      - {id: promo, email: {template: templates/nudge.mjml, subject: Promo}}
    """
    project.journey(other, "other")
    project.journey("""
    journey: j
    entry: {segment: trials}
    settings: {from: "Acme <hello@acme.test>", frequency_cap: {email: 1 per 1d}}
    steps:
      - {id: hello, email: {template: templates/welcome.mjml, subject: Hi}}
      - {id: tips, email: {template: templates/tips.mjml, subject: Tips}}
    """)
    project.import_contacts(CONTACTS, now="2026-03-02T00:00:00+00:00")
    project.run("other", now="2026-03-02T10:00:00+00:00")
    result = project.run(now="2026-03-02T12:00:00+00:00")
    assert result["sent"] == 0 and result["held"] == 2
    assert _due(project)["ada@example.com"] == "2026-03-03T10:00:00+00:00"
    assert project.run(now="2026-03-03T10:00:00+00:00")["sent"] == 2  # hello; tips is capped
    assert project.run(now="2026-03-04T10:00:00+00:00")["sent"] == 2
    assert [s[1] for s in project.sent()] == ["hello", "hello", "tips", "tips"]
