"""A small, varied world of contacts, events and engagements, and a plain-Python oracle
that evaluates conditions over it the way PRODUCT.md §3 and audiences/compiler.py say."""

from __future__ import annotations

import operator
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from audiences.compiler import COLUMNS, TRAITS, iso_text
from audiences.spec import (
    AllGroup,
    AnyGroup,
    AttributeCondition,
    EngagedCondition,
    EventCondition,
    NotGroup,
    SegmentRef,
)
from reach import clock
from reach.db.schema import contact_traits, contacts, engagements, events, messages

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOSTILE = "'; DROP TABLE contacts; --"
TEXTS = ["pro", "free", "Pro", "", "é", "zürich", "a%b_c", HOSTILE, "1", "true", "2026-05-20"]


@dataclass
class Person:
    id: int
    cols: dict[str, Any]
    attrs: dict[str, Any]
    traits: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    engagements: list[dict[str, Any]] = field(default_factory=list)


def build(engine: Engine, n: int = 40, seed: int = 7) -> list[Person]:
    """Insert ``n`` contacts with random but reproducible data; return the Python copy."""
    rnd = random.Random(seed)
    people: list[Person] = []
    with engine.begin() as conn:
        rows = []
        for i in range(1, n + 1):
            attrs: dict[str, Any] = {}
            for key, pool in {
                "plan": TEXTS,
                "age": [0, 5, 10, 10.5, 42, -3, "10", True],
                "vip": [True, False, "true", 1],
                "tags": [["a", "b"], ["pro"], [], [1, 2], "a,b", [HOSTILE], [True]],
                "since": [iso_text(NOW - timedelta(days=d)) for d in (1, 20, 100, 400)]
                + ["2026-05-20", "soon"],
            }.items():
                if rnd.random() < 0.8:
                    attrs[key] = rnd.choice(pool)
            cols = {
                "id": i,
                "email": f"user{i}@{rnd.choice(['example.org', 'acme.test'])}"
                if rnd.random() < 0.9 else None,
                "external_id": f"ext-{i}",
                "phone": rnd.choice([None, f"+4915112345{i:03d}"]),
                "first_name": rnd.choice([None, "Ann", "ann", "Zoë", "Bob", HOSTILE]),
                "last_name": None,
                "country": rnd.choice([None, "DE", "AT", "FR", "US"]),
                "timezone": None,
                "locale": rnd.choice([None, "de-DE", "en"]),
                "email_status": rnd.choice(["subscribed"] * 4 + ["unsubscribed", "bounced"]),
                "sms_status": rnd.choice(["subscribed", "complained"]),
                "created_at": NOW - timedelta(days=rnd.choice([0.5, 3, 40, 200])),
                "updated_at": NOW,
                "erased_at": NOW if rnd.random() < 0.05 else None,
            }
            rows.append({**cols, "attributes": attrs})
            people.append(Person(i, cols, attrs))
        conn.execute(insert(contacts), rows)
        conn.execute(insert(messages), [
            {"id": mid, "idempotency_key": f"k{mid}", "source_kind": "campaign",
             "source_name": name, "source_version": "v", "contact_id": 1, "channel": "email",
             "status": "sent", "created_at": NOW} for mid, name in ((1, "camp-a"), (2, "camp-b"))
        ])
        ev_rows, eng_rows, trait_rows = [], [], []
        for p in people:
            for _ in range(rnd.choice([0, 0, 1, 2, 3, 5])):
                props: dict[str, Any] = {}
                if rnd.random() < 0.8:
                    props["amount"] = rnd.choice([5, 10, 25.5, 100, "12"])
                if rnd.random() < 0.4:
                    props["sku"] = rnd.choice(["A-1", "B-2", HOSTILE])
                e = {"contact_id": p.id, "type": rnd.choice(["purchase", "purchase", "referral"]),
                     "occurred_at": NOW - timedelta(days=rnd.choice([0.1, 2, 10, 29, 45, 200])),
                     "properties": props, "received_at": NOW}
                ev_rows.append(e)
                p.events.append(e)
            for _ in range(rnd.choice([0, 1, 2])):
                g = {"message_id": rnd.choice([1, 2]), "contact_id": p.id,
                     "kind": rnd.choice(["open", "click", "delivered"]),
                     "occurred_at": NOW - timedelta(days=rnd.choice([1, 30, 90])),
                     "machine": rnd.random() < 0.3}
                eng_rows.append(g)
                p.engagements.append(g)
            if rnd.random() < 0.7:
                t = {"recency_days": rnd.choice([1.5, 10.0, 90.0]),
                     "frequency": rnd.choice([0, 1, 4]), "monetary": rnd.choice([None, 20, 55]),
                     "lifetime_revenue": rnd.choice([0, 100, 250]),
                     "r_score": rnd.randint(1, 5), "f_score": rnd.randint(1, 5),
                     "m_score": rnd.choice([None, 3])}
                trait_rows.append({"contact_id": p.id, "refreshed_at": NOW, **t})
                p.traits = t
        if ev_rows:
            conn.execute(insert(events), ev_rows)
        if eng_rows:
            conn.execute(insert(engagements), eng_rows)
        if trait_rows:
            conn.execute(insert(contact_traits), trait_rows)
    return people


# --- the oracle ---------------------------------------------------------------------------

_OPS = {"eq": operator.eq, "lt": operator.lt, "lte": operator.le, "gt": operator.gt,
        "gte": operator.ge, "ne": operator.ne}


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def json_match(v: Any, op: str, value: Any) -> bool:
    """``v`` is the JSON value (None when absent)."""
    if op == "ne":
        return not json_match(v, "eq", value)
    if op == "not_in":
        return not json_match(v, "in", value)
    if op == "exists":
        return (v is not None) == value
    if op == "in":
        return any(json_match(v, "eq", x) for x in value)
    if op == "contains":
        if isinstance(value, str) and isinstance(v, str) and value in v:
            return True
        return isinstance(v, list) and any(
            (isinstance(e, str) and isinstance(value, str) and e == value)
            or (_is_num(e) and _is_num(value) and e == value) for e in v)
    if isinstance(value, bool):
        return isinstance(v, bool) and v == value
    if _is_num(value):
        return _is_num(v) and _OPS[op](v, value)
    text = iso_text(value) if isinstance(value, date) else value
    return isinstance(v, str) and _OPS[op](v, text)


def _instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return clock.parse_instant(value)


def column_match(v: Any, name: str, op: str, value: Any) -> bool:
    if op == "ne":
        return not column_match(v, name, "eq", value)
    if op == "not_in":
        return not column_match(v, name, "in", value)
    if op == "exists":
        return (v is not None) == value
    if v is None:
        return False
    if COLUMNS[name] == "time":
        if op == "in":
            return any(v == _instant(x) for x in value)
        return _OPS[op](v, _instant(value))
    low = (lambda s: s.lower()) if name == "email" else (lambda s: s)
    if op == "in":
        return v in [low(x) for x in value]
    if op == "contains":
        return low(value) in v
    return _OPS[op](v, low(value))


def trait_match(v: Any, op: str, value: Any) -> bool:
    if op == "ne":
        return not trait_match(v, "eq", value)
    if op == "not_in":
        return not trait_match(v, "in", value)
    if op == "exists":
        return (v is not None) == value
    if v is None:
        return False
    if op == "in":
        return any(float(v) == x for x in value)
    return _OPS[op](float(v), value)


def _in_window(t: datetime, within: str | None, now: datetime) -> bool:
    return within is None or now - clock.parse_duration(within) <= t <= now


def holds(cond: Any, p: Person, now: datetime = NOW, segments: dict | None = None) -> bool:
    """Whether ``cond`` holds for ``p``."""
    if isinstance(cond, AttributeCondition):
        name = cond.attribute
        if cond.within is not None:
            if name == "created_at":
                return _in_window(p.cols["created_at"], cond.within, now)
            v = p.attrs.get(name)
            lo = iso_text(now - clock.parse_duration(cond.within))
            return isinstance(v, str) and lo <= v <= iso_text(now)
        op, value = cond.operator()
        if name in TRAITS:
            return trait_match(p.traits.get(name), op, value)
        if name in COLUMNS:
            return column_match(p.cols.get(name), name, op, value)
        return json_match(p.attrs.get(name), op, value)
    if isinstance(cond, EventCondition):
        n = sum(
            1 for e in p.events
            if e["type"] == cond.event and _in_window(e["occurred_at"], cond.within, now)
            and all(json_match(e["properties"].get(k), *f.operator()) for k, f in cond.filters())
        )
        return all(_OPS[op](n, v) for op, v in cond.count.bounds())
    if isinstance(cond, EngagedCondition):
        kind, source = cond.engaged.kind()
        return any(
            g["kind"] == kind and _in_window(g["occurred_at"], cond.engaged.within, now)
            and (cond.engaged.include_machine or not g["machine"])
            and (source == "any" or {1: "camp-a", 2: "camp-b"}[g["message_id"]] == source)
            for g in p.engagements
        )
    if isinstance(cond, AllGroup):
        return all(holds(c, p, now, segments) for c in cond.all)
    if isinstance(cond, AnyGroup):
        return any(holds(c, p, now, segments) for c in cond.any)
    if isinstance(cond, NotGroup):
        return not holds(cond.not_, p, now, segments)
    if isinstance(cond, SegmentRef):
        spec = (segments or {})[cond.segment]
        parts = [holds(c, p, now, segments) for c in spec.conditions]
        return any(parts) if spec.match == "any" else all(parts)
    raise TypeError(cond)


def eligible(p: Person, channel: str) -> bool:
    address = p.cols["email"] if channel == "email" else p.cols["phone"]
    return (p.cols["erased_at"] is None and p.cols[f"{channel}_status"] == "subscribed"
            and bool(address))
