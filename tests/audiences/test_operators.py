"""Every operator on the real database, against the plain-Python oracle of world.py."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from audiences.compiler import compile_conditions, parse_conditions
from audiences.spec import SegmentSpec
from reach.db.schema import contacts

from .world import HOSTILE, NOW, TEXTS, build, holds

JSON_KEYS = ["plan", "age", "vip", "tags", "since", "missing"]
COLUMN_KEYS = ["email", "first_name", "country", "locale", "email_status"]
TRAIT_KEYS = ["recency_days", "frequency", "r_score", "monetary"]
NUMBERS = [0, 5, 10, 10.5, 42, -3, 1]
DATES = [date(2026, 5, 20), datetime(2026, 5, 31, 12, tzinfo=NOW.tzinfo), "2026-05-12"]


def ids(engine: Engine, conds: list, match: str = "all", **kw) -> set[int]:
    where = compile_conditions(conds, match, now=NOW, **kw)
    with engine.connect() as conn:
        return set(conn.execute(select(contacts.c.id).where(where)).scalars())


def expected(people, conds, match="all", segments=None) -> set[int]:
    models = parse_conditions(conds)
    pick = any if match == "any" else all
    return {p.id for p in people if pick(holds(c, p, NOW, segments) for c in models)}


@pytest.fixture
def world(engine: Engine):
    return build(engine)


# One explicit case per operator and kind of value, so each is checked on every run.
CASES = [
    {"attribute": "plan", "eq": "pro"}, {"attribute": "plan", "ne": "pro"},
    {"attribute": "plan", "eq": HOSTILE}, {"attribute": "plan", "lt": "p"},
    {"attribute": "plan", "gte": "Pro"}, {"attribute": "plan", "in": ["pro", "free", HOSTILE]},
    {"attribute": "plan", "not_in": ["pro"]}, {"attribute": "plan", "contains": "r"},
    {"attribute": "plan", "contains": "%"}, {"attribute": "plan", "exists": True},
    {"attribute": "plan", "exists": False}, {"attribute": "age", "gt": 5},
    {"attribute": "age", "lte": 10}, {"attribute": "age", "eq": 10}, {"attribute": "age",
                                                                       "eq": "10"},
    {"attribute": "age", "in": [10, 42, "10"]}, {"attribute": "vip", "eq": True},
    {"attribute": "vip", "ne": True}, {"attribute": "vip", "eq": False},
    {"attribute": "tags", "contains": "a"}, {"attribute": "tags", "contains": 1},
    {"attribute": "tags", "contains": HOSTILE}, {"attribute": "since", "within": "30d"},
    {"attribute": "since", "gte": date(2026, 5, 1)}, {"attribute": "since", "lt": "2026"},
    {"attribute": "email", "contains": "@example.org"},
    {"attribute": "email", "eq": "USER3@EXAMPLE.ORG"},
    {"attribute": "first_name", "gt": "Ann"}, {"attribute": "first_name", "eq": HOSTILE},
    {"attribute": "first_name", "ne": "Ann"}, {"attribute": "country", "in": ["DE", "AT"]},
    {"attribute": "country", "not_in": ["DE"]}, {"attribute": "locale", "exists": False},
    {"attribute": "created_at", "within": "7d"},
    {"attribute": "created_at", "lt": date(2026, 5, 1)},
    {"attribute": "created_at", "gte": "2026-05-01T00:00:00Z"},
    {"attribute": "r_score", "gte": 4}, {"attribute": "monetary", "exists": True},
    {"attribute": "frequency", "eq": 0}, {"attribute": "recency_days", "in": [1.5, 90]},
    {"attribute": "recency_days", "ne": 10},
    {"event": "purchase"}, {"event": "purchase", "count": {"gte": 2}, "within": "30d"},
    {"event": "purchase", "count": {"eq": 0}, "within": "30d"},
    {"event": "purchase", "count": {"lt": 2, "ne": 0}},
    {"event": "purchase", "where": {"amount": {"gte": 10}}},
    {"event": "purchase", "where": {"amount": "12"}},
    {"event": "purchase", "count": {"lte": 1}, "where": {"sku": {"in": ["A-1", HOSTILE]}}},
    {"event": "referral", "within": "15d", "where": {"sku": {"exists": False}}},
    {"engaged": {"clicked": "any"}}, {"engaged": {"opened": "any", "within": "60d"}},
    {"engaged": {"opened": "camp-a", "include_machine": True}},
    {"not": {"attribute": "plan", "eq": "pro"}},
    {"any": [{"attribute": "vip", "eq": True}, {"event": "referral"}]},
    {"not": [{"attribute": "age", "gt": 0}, {"engaged": {"clicked": "any"}}]},
    {"all": [{"any": [{"attribute": "country", "eq": "DE"}, {"not": {"event": "purchase"}}]},
             {"attribute": "plan", "exists": True}]},
]


@pytest.mark.parametrize("match", ["all", "any"])
def test_each_operator_matches_the_oracle(engine: Engine, world, match: str) -> None:
    for case in CASES:
        assert ids(engine, [case]) == expected(world, [case]), case
    pair = CASES[:2]
    assert ids(engine, pair, match) == expected(world, pair, match)


def test_segment_reference(engine: Engine, world) -> None:
    segs = {"pros": SegmentSpec(segment="pros", match="any", conditions=parse_conditions(
        [{"attribute": "plan", "eq": "pro"}, {"attribute": "vip", "eq": True}]))}
    conds = [{"segment": "pros"}, {"not": {"event": "purchase"}}]
    assert ids(engine, conds, segments=segs) == expected(world, conds, segments=segs)


# --- property-based: random nested conditions ----------------------------------------------

texts = st.sampled_from(TEXTS) | st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)
scalars = texts | st.sampled_from(NUMBERS) | st.booleans() | st.sampled_from(DATES)
durations = st.sampled_from(["1d", "15d", "30d", "90d", "12h", "2w"])


@st.composite
def attribute_leaf(draw) -> dict:
    kind = draw(st.sampled_from(["json", "column", "trait"]))
    op = draw(st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in",
                               "contains", "exists", "within"]))
    if kind == "json":
        key = draw(st.sampled_from(JSON_KEYS))
        values = scalars
    elif kind == "column":
        key = draw(st.sampled_from(COLUMN_KEYS))
        values = texts
    else:
        key = draw(st.sampled_from(TRAIT_KEYS))
        values = st.sampled_from(NUMBERS + [1.5, 90])
    if op == "within":
        return {"attribute": draw(st.sampled_from(["since", "created_at"])),
                "within": draw(durations)}
    if op == "exists":
        return {"attribute": key, "exists": draw(st.booleans())}
    if op in ("in", "not_in"):
        return {"attribute": key, op: draw(st.lists(values, min_size=1, max_size=3))}
    if op == "contains":
        value = draw(texts if kind != "trait" else st.sampled_from(NUMBERS))
        if kind == "trait":
            return {"attribute": key, "exists": True}
        return {"attribute": key, "contains": value}
    value = draw(values)
    if kind == "json" and isinstance(value, bool) and op != "eq":
        op = "eq"
    return {"attribute": key, op: value}


@st.composite
def event_leaf(draw) -> dict:
    leaf: dict = {"event": draw(st.sampled_from(["purchase", "referral", "signup"]))}
    if draw(st.booleans()):
        ops = draw(st.lists(st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte"]),
                            min_size=1, max_size=2, unique=True))
        leaf["count"] = {op: draw(st.integers(0, 4)) for op in ops}
    if draw(st.booleans()):
        leaf["within"] = draw(durations)
    if draw(st.booleans()):
        leaf["where"] = {"amount": {draw(st.sampled_from(["gte", "lt", "eq", "ne"])):
                                    draw(st.sampled_from([5, 10, 25.5, "12"]))}}
    return leaf


@st.composite
def engaged_leaf(draw) -> dict:
    spec = {draw(st.sampled_from(["opened", "clicked"])):
            draw(st.sampled_from(["any", "camp-a", "camp-b"]))}
    if draw(st.booleans()):
        spec["within"] = draw(durations)
    if draw(st.booleans()):
        spec["include_machine"] = True
    return {"engaged": spec}


leaves = attribute_leaf() | event_leaf() | engaged_leaf()
conditions = st.recursive(
    leaves,
    lambda inner: st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"all": xs})
    | st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"any": xs})
    | inner.map(lambda x: {"not": x}),
    max_leaves=5,
)


def test_random_conditions_match_the_oracle(engine: Engine) -> None:
    people = build(engine, n=30, seed=11)

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(conditions, min_size=1, max_size=3), st.sampled_from(["all", "any"]))
    def check(conds: list, match: str) -> None:
        assert ids(engine, conds, match) == expected(people, conds, match)

    check()


def test_values_are_bound_parameters(engine: Engine, world) -> None:
    where = compile_conditions([{"attribute": "plan", "eq": HOSTILE},
                                {"attribute": "first_name", "contains": HOSTILE}], now=NOW)
    with engine.connect() as conn:
        sql = str(where.compile(conn))
    assert "DROP" not in sql and HOSTILE not in sql
    assert ids(engine, [{"attribute": HOSTILE, "eq": HOSTILE}]) == set()
    with engine.connect() as conn:  # the table is still there
        assert conn.execute(select(contacts.c.id)).first() is not None


def test_relative_time_uses_the_clock(engine: Engine, world, monkeypatch) -> None:
    later = NOW + timedelta(days=10)
    monkeypatch.setenv("REACH_NOW", later.isoformat())
    cond = [{"event": "purchase", "within": "12d"}]
    where = compile_conditions(cond)
    with engine.connect() as conn:
        got = set(conn.execute(select(contacts.c.id).where(where)).scalars())
    models = parse_conditions(cond)
    assert got == {p.id for p in world if holds(models[0], p, later)}
