"""A recurring campaign with a Thompson-sampling bandit: every sending splits the audience by
what the earlier sendings achieved."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import insert, select

from reach.clock import parse_instant
from reach.db.schema import ab_decisions, engagements, messages

CAMPAIGN = """\
campaign: weekly
audience: {segment: subscribers}
schedule: "0 9 * * *"
channel: email
email:
  from: "Acme <news@acme.test>"
  subject: "Default"
  template: templates/newsletter.mjml
ab_test:
  strategy: bandit
  metric: clicked
  variants:
    - {id: a, subject: "A"}
    - {id: b, subject: "B"}
"""


def test_bandit_shifts_the_next_sending_towards_the_better_variant(project: Path, cli,
                                                                   monkeypatch) -> None:
    from campaigns.due import tick_campaigns
    from reach.db import connect
    from reach.scaffold import _write_contacts
    from reach.settings import load_settings

    _write_contacts(project / "contacts.csv", 400, seed=9)
    (project / "campaigns" / "weekly.yaml").write_text(CAMPAIGN)
    assert cli("contacts", "import", str(project / "contacts.csv")).exit_code == 0
    monkeypatch.setenv("REACH_NOW", "2026-11-24T09:05:00+00:00")
    settings = load_settings(project)
    engine = connect(settings.resolved_database_url)

    first = tick_campaigns(settings, engine)["weekly"]
    assert first["sent"] == 400
    with engine.begin() as conn:
        rows = conn.execute(select(messages.c.id, messages.c.contact_id, messages.c.variant)
                            ).all()
        split = {v: sum(1 for r in rows if r.variant == v) for v in ("a", "b")}
        assert 140 <= split["a"] <= 260  # equal shares before any result
        for i, (mid, cid, variant) in enumerate(rows):
            if (variant == "b" and i % 3 == 0) or (variant == "a" and i % 40 == 0):
                conn.execute(insert(engagements).values(
                    message_id=mid, contact_id=cid, kind="click", url="https://acme.test/",
                    occurred_at=parse_instant("2026-11-24T12:00:00+00:00"), machine=False))

    assert tick_campaigns(settings, engine) == {}  # same day: this sending is done
    monkeypatch.setenv("REACH_NOW", "2026-11-25T09:05:00+00:00")
    second = tick_campaigns(settings, engine)["weekly"]
    assert second["sent"] == 400  # a new sending: everyone again, once
    with engine.connect() as conn:
        shares = conn.execute(select(ab_decisions.c.stats).where(
            ab_decisions.c.test_key == "campaign:weekly:20261125T0900")).scalar()["shares"]
        later = [r[0] for r in conn.execute(select(messages.c.variant)
                                            .where(messages.c.id > max(r[0] for r in rows)))]
    assert shares["b"] > 0.95
    assert later.count("b") > 0.9 * len(later)
