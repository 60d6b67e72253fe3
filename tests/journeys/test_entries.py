"""Entry kinds, re-entry rules and goal exits, walked with REACH_NOW through the CLI."""

from __future__ import annotations

from tests.journeys.conftest import CONTACTS, Project

T0 = "2026-03-02T10:00:00+00:00"
SIMPLE = """
journey: j
entry: {ENTRY}
settings: {{from: "Acme <hello@acme.test>"}}
steps:
  - {{id: hello, email: {{template: templates/welcome.mjml, subject: Hi}}}}
  - {{id: pause, wait: 1d}}
"""


def _journey(project: Project, entry: str) -> None:
    project.journey(SIMPLE.format(ENTRY=entry))


def test_event_entry_reenters_only_after_the_cooldown(project: Project) -> None:
    _journey(project, "{event: signed_up, re_entry: {after: 3d}}")
    project.import_contacts(CONTACTS, now=T0)
    project.run(now=T0)  # goes live: earlier events do not enrol
    project.events([{"contact": "cy@example.com", "type": "signed_up",
                     "occurred_at": "2026-03-02T11:00:00+00:00"}], now="2026-03-02T11:00:00+00:00")
    assert project.run(now="2026-03-02T12:00:00+00:00")["enrolled"] == 1
    assert project.run(now="2026-03-03T12:00:00+00:00")["exited"] == {"completed": 1}
    # A second sign-up inside the cool-down does nothing; one after it re-enters.
    project.events([{"contact": "cy@example.com", "type": "signed_up",
                     "occurred_at": "2026-03-04T09:00:00+00:00"}], now="2026-03-04T09:00:00+00:00")
    assert project.run(now="2026-03-04T10:00:00+00:00")["reentered"] == 0
    project.events([{"contact": "cy@example.com", "type": "signed_up",
                     "occurred_at": "2026-03-06T09:00:00+00:00"}], now="2026-03-06T09:00:00+00:00")
    assert project.run(now="2026-03-06T10:00:00+00:00")["reentered"] == 1
    assert project.states()["cy@example.com"]["entry_count"] == 2
    assert [s[:2] for s in project.sent()] == [("cy@example.com", "hello")] * 2


def test_segment_entry_never_and_always(project: Project) -> None:
    _journey(project, "{segment: trials, re_entry: never}")
    project.import_contacts(CONTACTS, now=T0)
    assert project.run(now=T0)["enrolled"] == 2
    project.run(now="2026-03-04T10:00:00+00:00")
    assert project.run(now="2026-03-06T10:00:00+00:00")["reentered"] == 0
    # always: re-enter once the contact has left the segment and joined it again.
    _journey(project, "{segment: trials, re_entry: always}")
    assert project.run(now="2026-03-07T10:00:00+00:00")["reentered"] == 0
    project.import_contacts([{"email": "ada@example.com", "plan": "pro"}], now=T0)
    project.run(now="2026-03-08T10:00:00+00:00")
    project.import_contacts([{"email": "ada@example.com", "plan": "trial"}], now=T0)
    assert project.run(now="2026-03-09T10:00:00+00:00")["reentered"] == 1
    assert project.states()["ada@example.com"]["entry_count"] == 2
    assert project.states()["bob@example.com"]["entry_count"] == 1


def test_schedule_entry_enrols_segment_members_on_each_occurrence(project: Project) -> None:
    _journey(project, '{segment: trials, schedule: "0 9 * * MON", re_entry: always}')
    project.import_contacts(CONTACTS, now=T0)
    # 2026-03-02 is a Monday; the journey goes live after 09:00, so that run is not owed.
    assert project.run(now=T0)["enrolled"] == 0
    assert project.run(now="2026-03-08T10:00:00+00:00")["enrolled"] == 0
    assert project.run(now="2026-03-09T09:05:00+00:00")["enrolled"] == 2
    project.run(now="2026-03-10T10:00:00+00:00")
    assert project.run(now="2026-03-16T09:00:00+00:00")["reentered"] == 2
    assert len(project.sent()) == 4


def test_goal_reached_exits_with_reason_goal(project: Project) -> None:
    project.journey("""
    journey: j
    entry: {segment: trials}
    goal: {event: purchase, within: 5d}
    exit_on_goal: true
    settings: {from: "Acme <hello@acme.test>"}
    steps:
      - {id: hello, email: {template: templates/welcome.mjml, subject: Hi}}
      - {id: pause, wait: 3d}
      - {id: check, branch: [{if: {converted: true}, steps: [{id: thanks, exit: bought}]}]}
      - {id: again, email: {template: templates/nudge.mjml, subject: Still there?}}
    """)
    project.import_contacts(CONTACTS, now=T0)
    project.run(now=T0)
    project.events([{"contact": "ada@example.com", "type": "purchase",
                     "occurred_at": "2026-03-03T10:00:00+00:00"}], now="2026-03-03T10:00:00+00:00")
    result = project.run(now="2026-03-03T11:00:00+00:00")
    assert result["exited"] == {"goal": 1}
    project.run(now="2026-03-05T11:00:00+00:00")
    states = project.states()
    assert (states["ada@example.com"]["status"], states["ada@example.com"]["exit_reason"]) == \
        ("exited", "goal")
    assert states["bob@example.com"]["status"] == "done"
    assert [s[:2] for s in project.sent()] == [("ada@example.com", "hello"),
                                               ("bob@example.com", "hello"),
                                               ("bob@example.com", "again")]
