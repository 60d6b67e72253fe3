"""A journey's ab_test decides itself: the sequential test runs on every tick, and once it is
significant new arrivals get the winner; an A/A test stays undecided until its deadline."""

from __future__ import annotations

from sqlalchemy import insert, select

from reach.clock import parse_instant
from reach.db.schema import ab_decisions, engagements, messages
from tests.journeys.conftest import Project

T0 = "2026-03-02T10:00:00+00:00"
JOURNEY = """
journey: j
entry: {segment: trials}
settings: {from: "Acme <hello@acme.test>"}
steps:
  - id: nudge
    ab_test:
      metric: clicked
      decide_after: 7d
      fallback: send_control
      variants:
        - {id: a, email: {template: templates/nudge.mjml, subject: "Still there?"}}
        - {id: b, email: {template: templates/tips.mjml, subject: "3 tips"}}
"""


def people(lo: int, hi: int) -> list[dict[str, str]]:
    return [{"email": f"p{i}@example.com", "first_name": f"P{i}", "plan": "trial"}
            for i in range(lo, hi)]


def click(project: Project, when: str, rate: dict[str, int]) -> None:
    """Human clicks on every rate[variant]-th message of each variant."""
    with project.engine().begin() as conn:
        rows = conn.execute(select(messages.c.id, messages.c.contact_id, messages.c.variant)
                            .where(messages.c.step_id == "nudge")
                            .order_by(messages.c.id)).all()
        seen: dict[str, int] = {}
        for mid, cid, variant in rows:
            seen[variant] = seen.get(variant, 0) + 1
            if seen[variant] % rate[variant] == 0:
                conn.execute(insert(engagements).values(
                    message_id=mid, contact_id=cid, kind="click", url="https://acme.test/go",
                    occurred_at=parse_instant(when), machine=False))


def test_sequential_decision_routes_new_arrivals_to_winner(project: Project) -> None:
    project.journey(JOURNEY)
    project.import_contacts(people(0, 600), now=T0)
    project.run(now=T0)
    click(project, "2026-03-02T12:00:00+00:00", {"a": 20, "b": 2})  # 5% vs 50%
    result = project.run(now="2026-03-02T13:00:00+00:00")
    assert result["decisions"]["nudge"]["winner"] == "b"
    decision = project.rows(select(ab_decisions))[0]
    assert decision["outcome"] == "significant" and decision["winner"] == "b"
    assert "sequential_state" in decision["stats"]

    project.import_contacts(people(600, 620), now=T0)
    project.run(now="2026-03-02T14:00:00+00:00")
    late = [v for _, step, v, _ in project.sent() if step == "nudge"][600:]
    assert late == ["b"] * 20


def test_aa_test_stays_pending_until_deadline_then_falls_back(project: Project) -> None:
    project.journey(JOURNEY)
    project.import_contacts(people(0, 400), now=T0)
    project.run(now=T0)
    click(project, "2026-03-02T12:00:00+00:00", {"a": 10, "b": 10})  # identical arms
    result = project.run(now="2026-03-03T10:00:00+00:00")
    assert result["decisions"] == {}
    (row,) = project.rows(select(ab_decisions))
    assert row["outcome"] == "pending" and row["winner"] is None
    result = project.run(now="2026-03-10T10:00:01+00:00")  # past decide_after
    (row,) = project.rows(select(ab_decisions))
    assert row["outcome"] == "fallback:send_control" and row["winner"] == "a"
