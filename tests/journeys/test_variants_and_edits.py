"""A/B tests and splits in journeys, editing a live journey, graph, simulate, report, view."""

from __future__ import annotations

import json

from sqlalchemy import delete, insert, select

from reach.clock import parse_instant
from reach.db.schema import ab_assignments, ab_decisions
from reports.assign import assign_variant
from tests.journeys.conftest import Project

T0 = "2026-03-02T10:00:00+00:00"
PEOPLE = [{"email": f"p{i}@example.com", "first_name": f"P{i}", "plan": "trial",
           "phone": f"+4477009{i:05d}"} for i in range(40)]
AB = """
journey: j
entry: {segment: trials}
settings: {from: "Acme <hello@acme.test>"}
steps:
  - id: nudge
    ab_test:
      metric: clicked
      variants:
        - {id: a, weight: 50, email: {template: templates/nudge.mjml, subject: "Still there?"}}
        - {id: b, weight: 50, sms: {body: "Hi {{ contact.first_name }}, trial ends soon."}}
  - id: fork
    split:
      - {id: left, percent: 30, steps: [{id: l, update: {attributes: {side: left}}}]}
      - {id: right, percent: 70, steps: []}
"""


def test_ab_test_assigns_deterministically_and_winner_goes_to_new_arrivals(
        project: Project) -> None:
    project.journey(AB)
    project.import_contacts(PEOPLE[:30], now=T0)
    project.run(now=T0)
    sent = project.sent()
    key = "journey:j:nudge"
    rows = project.rows(select(ab_assignments).where(ab_assignments.c.test_key == key))
    ids = {r["contact_id"]: r["variant"] for r in rows}
    assert len(ids) == 30
    assert all(v == assign_variant(key, cid, [("a", 50), ("b", 50)]) for cid, v in ids.items())
    assert {v for _, _, v, _ in sent} == {"a", "b"}
    sms = (project.root / "outbox/sms/messages.jsonl").read_text().splitlines()
    assert len(sms) == sum(1 for _, _, v, _ in sent if v == "b")
    fork = project.rows(select(ab_assignments).where(ab_assignments.c.test_key == "journey:j:fork"))
    assert {r["variant"] for r in fork} == {"left", "right"} and len(fork) == 30
    with project.engine().begin() as conn:
        # The first tick left the sequential test pending; an operator's decision replaces it.
        conn.execute(delete(ab_decisions).where(ab_decisions.c.test_key == key))
        conn.execute(insert(ab_decisions).values(test_key=key, decided_at=parse_instant(T0),
                                                 winner="b", outcome="significant", stats={}))
    project.import_contacts(PEOPLE[30:], now=T0)
    project.run(now="2026-03-03T10:00:00+00:00")
    late = [v for e, step, v, _ in project.sent() if step == "nudge"][30:]
    assert late == ["b"] * 10


def test_editing_a_live_journey_keeps_positions_and_exits_removed_steps(
        project: Project) -> None:
    text = """
    journey: j
    entry: {segment: trials}
    settings: {from: "Acme <hello@acme.test>"}
    steps:
      - {id: hello, email: {template: templates/welcome.mjml, subject: Hi}}
      - {id: pause, wait: 1d}
      - {id: tips, email: {template: templates/tips.mjml, subject: Tips}}
      - {id: long, wait: 5d}
      - {id: bye, email: {template: templates/last.mjml, subject: Bye}}
    """
    project.journey(text)
    project.import_contacts(PEOPLE[:2], now=T0)
    first = project.run(now=T0)
    project.import_contacts(PEOPLE[2:3], now=T0)
    project.run(now="2026-03-03T10:00:00+00:00")  # p0, p1 now wait at `long`; p2 at `pause`
    # The marketer removes `pause`, reorders and edits a template: a new version.
    project.journey(text.replace("      - {id: pause, wait: 1d}\n", "")
                    .replace("subject: Bye", "subject: Goodbye"))
    second = project.run(now="2026-03-04T10:00:00+00:00")
    assert second["version"] != first["version"]
    assert second["exited"] == {"step_removed": 1}
    states = project.states()
    assert states["p2@example.com"]["exit_reason"] == "step_removed"
    assert states["p0@example.com"]["step_id"] == "long"
    project.run(now="2026-03-08T10:00:00+00:00")
    assert project.states()["p0@example.com"]["version"] == second["version"]
    steps = [(e, s) for e, s, _, _ in project.sent()]
    assert steps.count(("p0@example.com", "hello")) == 1
    assert ("p0@example.com", "bye") in steps and ("p2@example.com", "tips") not in steps
    data = json.loads(project.cli("report", "j", "--json").stdout)
    assert data["exits"] == {"completed": 2, "step_removed": 1}
    by_step = {s["step_id"]: s for s in data["steps"]}
    # The runtime's figures (reached, outcomes) and the ledger's (sent) on the same step.
    assert by_step["hello"]["sent"] == 3 and by_step["hello"]["reached"] == 3
    assert by_step["bye"]["reached"] == 2 and by_step["bye"]["sent"] == 2
    # A step removed by the edit stays in the report with who reached it before.
    assert by_step["pause"]["reached"] == 3 and by_step["pause"]["kind"] is None
    assert {"sent", "delivered", "opens_human", "clicks_human", "roi"} <= set(data)


def test_graph_simulate_and_view(project: Project) -> None:
    project.journey(AB)
    graph = project.cli("graph", "j").stdout
    assert graph.startswith("flowchart TD\n")
    assert 's_nudge{{"nudge<br/>A/B on clicked"}}' in graph
    assert "s_fork -->|left 30%| s_l" in graph and "s_fork -->|right 70%| finish" in graph
    people = project.root / "people.jsonl"
    people.write_text("".join(json.dumps(p) + "\n" for p in PEOPLE[:4]))
    result = project.cli("simulate", "j", "--contacts", str(people), "--days", "1",
                         "--every", "6h", "--start", T0, "--json")
    data = json.loads(result.stdout)
    assert data["ticks"] == 5 and data["entered"] == 4
    assert data["steps"]["nudge"] == 4 and len(data["messages"]) == 4
    assert not (project.root / "outbox").exists()  # nothing was really sent
    text = project.cli("simulate", "j", "--contacts", str(people), "--days", "0").stdout
    assert "Simulated j" in text and "nothing was sent" in text
    # View in browser re-renders a journey email from the stored plan.
    from journeys.plan import compile_journey
    from journeys.view import journey_template
    from reach.project import load_project
    from reach.settings import load_settings

    cfg = load_settings(project.root)
    plan = compile_journey(load_project(cfg), "j")
    tpl, context = journey_template(cfg, plan.model_dump(mode="json"), "nudge", "a")
    assert context["journey"] == "j"
    html = tpl.render_html_for_view({"email": "x@example.com", "first_name": "Xu",
                                     "attributes": {}}, message_id=1, context=context)
    assert "Xu" in html
    assert journey_template(cfg, plan.model_dump(mode="json"), "nudge", "b") is None


def test_journey_cost_gives_roi_in_the_report(project: Project) -> None:
    text = """
    journey: j
    entry: {segment: trials}
    goal: {event: purchase, within: 5d, revenue: amount}
    settings: {from: "Acme <hello@acme.test>"}
    steps:
      - {id: hello, email: {template: templates/welcome.mjml, subject: Hi}}
      - {id: ping, sms: {body: "Hi {{ contact.first_name }}"}}
    """
    project.journey(text)
    from journeys.plan import compile_journey
    from reach.project import load_project
    from reach.settings import load_settings

    plain = compile_journey(load_project(load_settings(project.root)), "j")
    assert plain.cost is None  # no cost written: none in the plan, nor in its version
    project.journey(text.replace("settings:", "cost: {fixed: 10, per_email: 0.5, per_sms: 2, "
                                              "currency: USD}\n    settings:"))
    costed = compile_journey(load_project(load_settings(project.root)), "j")
    assert costed.cost == {"fixed": 10, "per_email": 0.5, "per_sms": 2, "currency": "USD"}
    assert costed.version != plain.version
    project.import_contacts(PEOPLE[:4], now=T0)
    assert project.run(now=T0)["sent"] == 8  # an email and an SMS (one segment) each
    project.events([{"contact": "p1@example.com", "type": "purchase", "properties":
                     {"amount": 40}, "occurred_at": "2026-03-03T10:00:00+00:00"}],
                   now="2026-03-03T10:00:00+00:00")
    report = json.loads(project.cli("report", "j", "--json",
                                    now="2026-03-04T10:00:00+00:00").stdout)
    item = report[0] if isinstance(report, list) else report
    cost = 10 + 4 * 0.5 + 4 * 2  # fixed + per email + per SMS segment = 20
    assert (item["cost"], item["currency"], item["revenue"]) == (cost, "USD", 40.0)
    assert (item["roi"], item["roas"], item["cpa"]) == (1.0, 2.0, 20.0)
    # A broken cost is a validation error with the file's line, not a silent zero.
    project.journey(text.replace("settings:", "cost: {per_email: -1}\n    settings:"))
    result = project.cli("validate", ok=False)
    assert result.exit_code != 0 and "journeys/j.yaml:4" in result.output
