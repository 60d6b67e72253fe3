"""Event import and POST-style recording (idempotent), and the RFM trait refresh."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select

from audiences.compiler import compile_conditions
from audiences.events import EventError, import_events, record_events
from audiences.traits import refresh_traits
from reach.db.schema import contact_traits, contacts, events

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def add_contacts(engine: Engine, n: int) -> None:
    with engine.begin() as conn:
        conn.execute(insert(contacts), [
            {"id": i, "email": f"c{i}@x.org", "external_id": f"E{i}", "attributes": {},
             "created_at": NOW, "updated_at": NOW} for i in range(1, n + 1)])


def test_import_events_is_idempotent_and_rejects_unknown_contacts(engine: Engine,
                                                                   tmp_path: Path) -> None:
    add_contacts(engine, 2)
    lines = [
        {"contact": "C1@x.org", "type": "purchase", "occurred_at": "2026-05-30T10:00:00Z",
         "properties": {"amount": 10}, "id": "o-1"},
        {"contact": "E2", "type": "signup", "occurred_at": "2026-05-01T00:00:00+02:00"},
        {"contact": "nobody@x.org", "type": "purchase", "id": "o-2"},
        {"contact": "c1@x.org", "type": "purchase", "occurred_at": "last tuesday"},
        {"contact": "c1@x.org"},
    ]
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    steps: list[int] = []
    report = import_events(engine, path, progress=steps.append)
    assert report.inserted == 2 and report.duplicates == 0
    assert sum(steps) == 6  # every line read, the bad ones too
    assert [(r.line, r.reason.split(" ")[0]) for r in report.rejected] == [
        (3, "unknown"), (4, "invalid"), (5, "'type'"), (6, "invalid")]
    again = import_events(engine, path)
    # The event with a client id is recorded once; the one without is recorded again.
    assert (again.inserted, again.duplicates) == (1, 1)
    with engine.connect() as conn:
        row = conn.execute(select(events).where(events.c.event_key == "o-1")).one()
        assert row.properties == {"amount": 10} and row.contact_id == 1


def test_record_events_all_or_nothing(engine: Engine) -> None:
    add_contacts(engine, 1)
    batch = [{"contact": "c1@x.org", "type": "purchase", "id": "a"},
             {"contact": "c1@x.org", "type": "purchase", "id": "a"},
             {"contact": "E1", "type": "view", "properties": {"page": "/x"}}]
    with engine.begin() as conn:
        assert record_events(conn, batch) == 2
    with engine.begin() as conn:
        assert record_events(conn, batch[:1]) == 0
    with engine.begin() as conn, pytest.raises(EventError) as info:
        record_events(conn, [{"contact": "c1@x.org", "type": "ok"},
                             {"contact": "ghost", "type": "purchase"}])
    assert info.value.problems == [(1, "unknown contact 'ghost'")]
    with engine.begin() as conn, pytest.raises(EventError) as info:
        record_events(conn, [{"contact": "c1@x.org", "type": "x", "extra": 1}])
    assert "unknown field" in info.value.problems[0][1]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 2


def test_refresh_traits_rfm(engine: Engine) -> None:
    add_contacts(engine, 7)
    # contact i buys i times (1..5), amount 10*i each, last purchase i days ago;
    # contact 6 only has an event without a numeric amount; contact 7 never buys.
    rows = []
    for i in range(1, 6):
        for k in range(i):
            rows.append({"contact_id": i, "type": "purchase",
                         "occurred_at": NOW - timedelta(days=i + k),
                         "properties": {"amount": 10 * i}, "received_at": NOW})
    rows.append({"contact_id": 6, "type": "purchase", "occurred_at": NOW - timedelta(days=30),
                 "properties": {"amount": "lots"}, "received_at": NOW})
    rows.append({"contact_id": 7, "type": "view", "occurred_at": NOW, "properties": {},
                 "received_at": NOW})
    with engine.begin() as conn:
        conn.execute(insert(events), rows)
    assert refresh_traits(engine, now=NOW) == 7
    with engine.connect() as conn:
        t = {r.contact_id: r for r in conn.execute(select(contact_traits))}
    assert t[1].frequency == 1 and t[5].frequency == 5 and t[7].frequency == 0
    assert float(t[3].lifetime_revenue) == 90 and float(t[3].monetary) == 30
    assert abs(t[2].recency_days - 2) < 1e-6 and t[7].recency_days is None
    assert float(t[6].lifetime_revenue) == 0 and t[6].monetary is None
    # 6 buyers: ceil(5 * (buyers at or below) / 6). Recency: 1 is the most recent, 6 oldest.
    assert [t[i].r_score for i in range(1, 7)] == [5, 5, 4, 3, 2, 1]
    assert [t[i].f_score for i in range(1, 7)] == [2, 3, 4, 5, 5, 2]  # 1 and 6 tie: same score
    assert [t[i].m_score for i in range(1, 7)] == [2, 3, 4, 5, 5, 1]
    assert t[7].r_score is None
    where = compile_conditions([{"attribute": "r_score", "gte": 4},
                                {"attribute": "frequency", "lt": 3}], now=NOW)
    with engine.connect() as conn:
        assert set(conn.execute(select(contacts.c.id).where(where)).scalars()) == {1, 2}
    assert refresh_traits(engine, now=NOW) == 7  # a refresh replaces, never duplicates
