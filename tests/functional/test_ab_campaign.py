"""A/B campaign end to end: test phase, clicks over real HTTP, decision after decide_after on
the next tick, the winner to the rest, nobody twice."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from reach import clock
from reach.db.schema import ab_decisions, messages

CAMPAIGN = """\
campaign: subject-test
audience: {segment: subscribers}
channel: email
email:
  from: "Acme <news@acme.test>"
  subject: "Default"
  template: templates/black-friday.mjml
ab_test:
  variants:
    - {id: a, subject: "A: 30% off"}
    - {id: b, subject: "B: last chance"}
  test_fraction: 0.5
  metric: clicked
  decide_after: 4h
  confidence: 0.95
  min_per_variant: 30
  then: send_winner
goal: {event: purchase, within: 5d, revenue: amount}
cost: {fixed: 100, per_email: 0.01, currency: EUR}
"""


@pytest.mark.usefixtures("prefect_harness")
def test_ab_decides_on_tick_and_sends_winner_to_rest(project: Path, cli, monkeypatch) -> None:
    from campaigns.due import tick_campaigns
    from campaigns.plan import compile_campaign
    from campaigns.run import run_plan
    from campaigns.view import view_renderer
    from reach.db import connect
    from reach.demo import BackgroundServer, free_port, read_outbox
    from reach.project import load_project
    from reach.scaffold import _write_contacts
    from reach.settings import load_settings
    from tracking.app import create_app

    _write_contacts(project / "contacts.csv", 300, seed=3)
    (project / "campaigns" / "subject-test.yaml").write_text(CAMPAIGN)
    port = free_port()
    toml = project / "reach.toml"
    toml.write_text(toml.read_text().replace("http://127.0.0.1:8787",
                                             f"http://127.0.0.1:{port}"))
    assert cli("contacts", "import", str(project / "contacts.csv")).exit_code == 0
    t0 = clock.now().replace(microsecond=0)
    monkeypatch.setenv("REACH_NOW", t0.isoformat())
    settings = load_settings(project)
    eng = connect(settings.resolved_database_url)
    project_obj = load_project(settings)
    plan = compile_campaign(project_obj, "subject-test")

    first = run_plan(settings, eng, plan)
    assert first.status == "waiting_ab"
    assert 110 <= first.sent <= 190  # about half of 300
    with eng.connect() as conn:
        by_variant = dict(conn.execute(select(messages.c.variant, func.count())
                                       .group_by(messages.c.variant)).all())
    assert set(by_variant) == {"a", "b"}

    # Recipients of b click a lot, of a hardly: through the real tracking server.
    mails = read_outbox(settings.resolved_outbox_dir / "email")
    monkeypatch.setenv("REACH_NOW", (t0 + timedelta(hours=1)).isoformat())
    ua = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"}
    with BackgroundServer(create_app(settings, eng, view_renderer=view_renderer(settings, eng)),
                          port), httpx.Client(headers=ua) as client:
        with eng.connect() as conn:
            variant_of = dict(conn.execute(select(messages.c.to_address, messages.c.variant)).all())
        clicks = {"a": 0, "b": 0}
        purchases = []
        for i, mail in enumerate(mails):
            address = mail["to"].split("<")[-1].rstrip(">")
            variant = variant_of[address]
            if (variant == "b" and i % 2 == 0) or (variant == "a" and i % 15 == 0):
                client.get(mail["pixel"])
                assert client.get(mail["clicks"][0], follow_redirects=False).status_code == 302
                clicks[variant] += 1
                if i % 3 == 0:  # a third of the clickers buy, through the events API
                    purchases.append({"contact": address, "type": "purchase",
                                      "id": f"order-{i}", "properties": {"amount": 10 + i}})
        response = client.post(f"http://127.0.0.1:{port}/events", json={"events": purchases},
                               headers={"X-Reach-Key": settings.api_key})
        assert response.status_code in (200, 202), response.text
    assert clicks["b"] > 3 * clicks["a"]

    # Before decide_after: the tick decides nothing and sends nothing.
    monkeypatch.setenv("REACH_NOW", (t0 + timedelta(hours=2)).isoformat())
    assert tick_campaigns(settings, eng) == {}
    # After decide_after: `reach tick` (the Prefect flow) decides and sends the winner.
    monkeypatch.setenv("REACH_NOW", (t0 + timedelta(hours=5)).isoformat())
    ticked = cli("tick", "--json")
    assert ticked.exit_code == 0, ticked.output
    result = json.loads(ticked.output.strip().splitlines()[-1])["campaigns"]["subject-test"]
    assert result["status"] == "done"
    assert result["sent"] == 300 - first.sent
    with eng.connect() as conn:
        decision = conn.execute(select(ab_decisions)).mappings().one()
        rest = dict(conn.execute(select(messages.c.variant, func.count())
                                 .where(messages.c.source_name == "subject-test")
                                 .group_by(messages.c.variant)).all())
        # (the tick also ran the sample project's journey: only this campaign counts here)
        per_contact = conn.execute(
            select(messages.c.contact_id, func.count())
            .where(messages.c.source_name == "subject-test").group_by(messages.c.contact_id)
            .having(func.count() > 1)).all()
    assert decision["winner"] == "b" and decision["outcome"] == "significant"
    assert rest["b"] == by_variant["b"] + (300 - first.sent)
    assert rest["a"] == by_variant["a"]
    assert per_contact == []  # nobody got two messages
    # A third tick: nothing left to do.
    assert tick_campaigns(settings, eng) == {}

    # The report: exact counts, revenue, cost and ROI.
    reported = cli("report", "subject-test", "--json")
    assert reported.exit_code == 0, reported.output
    report = json.loads(reported.output)
    revenue = float(sum(p["properties"]["amount"] for p in purchases))
    cost = 100 + 0.01 * 300
    assert report["sent"] == 300 and report["delivered"] == 300
    assert report["clicks_unique"] == report["clicks_human"] == sum(clicks.values())
    assert report["opens_human"] == sum(clicks.values())
    assert report["conversions"] == len(purchases) and report["revenue"] == revenue
    assert report["cost"] == cost
    assert report["roi"] == round((revenue - cost) / cost, 6)
    assert report["decision"]["winner"] == "b"
    by_variant = {v["variant"]: v for v in report["variants"]}
    assert by_variant["b"]["clicks_human"] == clicks["b"]
