"""Suppression, keyset batches, counts, plans, segment references and attribute checks."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, insert, true
from sqlalchemy.exc import DBAPIError

from audiences.audience import stream_audience
from audiences.compiler import (
    ConditionError,
    audience_query,
    check_attributes,
    compile_conditions,
    contact_dict,
    count,
    explain,
    iter_audience,
    parse_conditions,
    segment_clause,
)
from audiences.spec import SegmentSpec
from reach.db.schema import contacts

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def seg(name: str, conds: list, match: str = "all") -> SegmentSpec:
    return SegmentSpec(segment=name, match=match, conditions=parse_conditions(conds))


@pytest.fixture
def people(engine: Engine) -> None:
    rows = [
        {"id": 1, "email": "a@x.org", "phone": "+4915100000001", "first_name": "Ann",
         "attributes": {"plan": "pro", "first_name": "shadowed", "score": 3}},
        {"id": 2, "email": "b@x.org", "phone": None, "email_status": "unsubscribed",
         "attributes": {"plan": "pro"}},
        {"id": 3, "email": "c@x.org", "phone": "+4915100000003", "email_status": "bounced",
         "sms_status": "subscribed", "attributes": {"plan": "pro"}},
        {"id": 4, "email": "d@x.org", "phone": "", "sms_status": "complained",
         "attributes": {"plan": "pro"}},
        {"id": 5, "email": None, "phone": "+4915100000005", "attributes": {"plan": "pro"}},
        {"id": 6, "email": "f@x.org", "erased_at": NOW, "attributes": {"plan": "pro"}},
        {"id": 7, "email": "g@x.org", "phone": "+4915100000007", "attributes": {"plan": "free"}},
    ] + [{"id": i, "email": f"m{i}@x.org", "attributes": {"plan": "pro", "n": i}}
         for i in range(8, 31)]
    with engine.begin() as conn:
        base = {"phone": None, "first_name": None, "email_status": "subscribed",
                "sms_status": "subscribed", "erased_at": None, "created_at": NOW,
                "updated_at": NOW}
        conn.execute(insert(contacts), [{**base, **r} for r in rows])


def test_suppression_whatever_the_segment_says(engine: Engine, people) -> None:
    everyone = compile_conditions([], now=NOW)
    with engine.connect() as conn:
        email = {c["id"] for b in iter_audience(conn, everyone, "email", 5) for c in b}
        sms = {c["id"] for b in iter_audience(conn, everyone, "sms", 5) for c in b}
        assert email == {1, 4, 7, *range(8, 31)}
        assert sms == {1, 3, 5, 7}
        assert count(conn, everyone) == 29 and count(conn, everyone, "sms") == 4
        pro = compile_conditions([{"attribute": "plan", "eq": "pro"}], now=NOW)
        assert count(conn, pro, "email") == 25


def test_keyset_batches_and_contact_dict_shape(engine: Engine, people) -> None:
    where = compile_conditions([{"attribute": "plan", "eq": "pro"}], now=NOW)
    with engine.connect() as conn:
        batches = list(iter_audience(conn, where, "email", batch_size=10))
        assert [len(b) for b in batches] == [10, 10, 5]
        ids = [c["id"] for b in batches for c in b]
        assert ids == sorted(ids) and len(set(ids)) == 25
        first = batches[0][0]
        assert first["first_name"] == "Ann"  # columns win over attributes of the same name
        assert first["attributes"]["first_name"] == "shadowed" and first["score"] == 3
        assert first["created_at"].tzinfo is not None
        # Attributes decoded per batch from JSON text: the same contact as a row read whole.
        whole = conn.execute(audience_query(where, "email", limit=1)).mappings().one()
        assert dict(first) == contact_dict(whole.items())
        # Resuming after an id skips what was already sent.
        rest = conn.execute(audience_query(where, "email", after_id=ids[19])).all()
        assert [r.id for r in rest] == ids[20:]
        assert len(conn.execute(audience_query(where, "email", limit=3)).all()) == 3


def test_stream_audience_gives_what_iter_audience_gives(engine: Engine, people) -> None:
    where = compile_conditions([{"attribute": "plan", "eq": "pro"}], now=NOW)
    with engine.connect() as conn:
        expected = [[dict(c) for c in b] for b in iter_audience(conn, where, "email", 4)]
    streamed = [[dict(c) for c in b] for b in stream_audience(engine, where, "email", 4)]
    assert streamed == expected and sum(map(len, streamed)) == 25
    # No channel: everyone not erased, whatever the statuses (an export).
    ids = [c["id"] for b in stream_audience(engine, true(), None, 7) for c in b]
    assert ids == [i for i in range(1, 31) if i != 6]


def test_stream_audience_stopped_early_or_failing(engine: Engine, people) -> None:
    where = compile_conditions([], now=NOW)
    for _ in range(3):  # stopping after one batch frees the reader and its connection
        stream = stream_audience(engine, where, None, 2)
        assert [c["id"] for c in next(stream)] == [1, 2]
        stream.close()
    assert not [t for t in threading.enumerate() if t.name == "reach-audience"]
    # An error of the query (here: a function the database does not have) reaches the caller.
    broken = func.no_such_function(contacts.c.id) > 0
    with pytest.raises(DBAPIError, match="no_such_function"):
        for _ in stream_audience(engine, broken, None, 2):
            pass


def test_explain_gives_sql_and_plan(engine: Engine, people) -> None:
    where = compile_conditions([{"attribute": "plan", "eq": "pro"},
                                {"event": "purchase", "count": {"gte": 2}, "within": "30d"}],
                               now=NOW)
    with engine.connect() as conn:
        sql, plan = explain(conn, where)
    assert "events" in sql and "purchase" in sql and plan.strip()


def test_segment_references_and_cycles(engine: Engine, people) -> None:
    segs = {"pros": seg("pros", [{"attribute": "plan", "eq": "pro"}]),
            "big": seg("big", [{"segment": "pros"}, {"attribute": "n", "gte": 25}]),
            "loop-a": seg("loop-a", [{"segment": "loop-b"}]),
            "loop-b": seg("loop-b", [{"segment": "loop-a"}])}
    with engine.connect() as conn:
        assert count(conn, segment_clause(segs["big"], segs, now=NOW)) == 6
    with pytest.raises(ConditionError, match="cycle: loop-a -> loop-b -> loop-a") as cycle:
        segment_clause(segs["loop-a"], segs)
    assert cycle.value.code == "R207"
    with pytest.raises(ConditionError, match="'nope' not found") as info:
        compile_conditions([{"segment": "nope"}], segments=segs)
    assert info.value.code == "R202"


@pytest.mark.parametrize("cond, message", [
    ({"attribute": "country", "eq": 5}, "country is text"),
    ({"attribute": "created_at", "eq": "soon"}, "created_at is a date"),
    ({"attribute": "r_score", "gt": "high"}, "is a number"),
    ({"attribute": "vip", "lt": True}, "does not apply to true/false"),
    ({"attribute": "plan", "within": "3d"}, None),
    ({"attribute": "email", "within": "3d"}, "within needs a date"),
])
def test_type_errors_are_reported(cond: dict, message: str | None) -> None:
    if message is None:
        compile_conditions([cond])  # a JSON attribute may hold a date: allowed
        return
    with pytest.raises(ConditionError, match=message) as info:
        compile_conditions([cond])
    assert info.value.code == "K103"


def test_check_attributes() -> None:
    conds = parse_conditions([
        {"attribute": "plan", "eq": "pro"}, {"attribute": "email", "exists": True},
        {"not": {"any": [{"attribute": "r_score", "gte": 4}, {"attribute": "tier", "eq": 1}]}},
        {"event": "purchase", "where": {"sku": "x"}}, {"segment": "other"},
    ])
    segs = {"other": seg("other", [{"attribute": "hidden", "exists": True}])}
    assert check_attributes(conds, {"plan"}) == ["tier"]
    assert check_attributes(conds, set(), segs) == ["plan", "tier", "hidden"]


def test_empty_groups() -> None:
    assert str(compile_conditions([])) == str(true())
    assert compile_conditions([], "any") is not None
