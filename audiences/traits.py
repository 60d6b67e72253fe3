"""Computed traits: recency, frequency, monetary value with RFM scores, lifetime revenue.

One set-based refresh (two statements in one transaction, the same SQL on SQLite and
PostgreSQL) rewrites ``contact_traits`` for every contact that is not erased:

* ``recency_days``: days since the last purchase; ``frequency``: number of purchases;
  ``monetary``: average order value; ``lifetime_revenue``: the sum of the revenue property.
  Contacts who never bought get frequency 0 and lifetime revenue 0, the rest NULL.
* ``r_score``/``f_score``/``m_score``: 1–5 among buyers by cumulative distribution,
  ``ceil(5 · share of buyers at or below this value)`` — ties get the same score and the
  result does not depend on row order (unlike ``ntile``). 5 is best: most recent, most
  frequent, highest order value.

A revenue property that is not a JSON number counts as no revenue for that event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, case, delete, func, insert, literal, select

from audiences import sqlfuncs as sf
from reach import clock
from reach.db.schema import Utc, contact_traits, contacts, events


def _score(position: Any, total: Any) -> Any:
    """1..5 = ceil(5 * position / total), in integer arithmetic."""
    return case(
        *((5 * position <= s * total, s) for s in range(1, 5)),
        else_=5,
    )


def refresh_traits(
    engine: Engine,
    event_type: str = "purchase",
    revenue_property: str = "amount",
    *,
    now: datetime | None = None,
) -> int:
    """Recompute ``contact_traits``; returns the number of contacts written."""
    at = clock.as_utc(now) or clock.now()
    props = events.c.properties
    revenue = case(
        (sf.json_is(props, revenue_property, "number"), sf.json_number(props, revenue_property)),
        else_=None,
    )
    per = (
        select(
            events.c.contact_id,
            func.max(events.c.occurred_at).label("last"),
            func.count().label("freq"),
            func.avg(revenue).label("aov"),
            func.coalesce(func.sum(revenue), 0).label("ltv"),
        )
        .where(events.c.type == event_type)
        .group_by(events.c.contact_id)
        .subquery("per")
    )
    total = func.count().over()
    scored = select(
        per,
        _score(func.count().over(order_by=per.c.last), total).label("r"),
        _score(func.count().over(order_by=per.c.freq), total).label("f"),
        _score(func.count().over(order_by=func.coalesce(per.c.aov, 0)), total).label("m"),
    ).subquery("scored")
    rows = (
        select(
            contacts.c.id,
            sf.days_between(literal(at, Utc), scored.c.last),
            func.coalesce(scored.c.freq, 0),
            scored.c.aov,
            func.coalesce(scored.c.ltv, 0),
            scored.c.r,
            scored.c.f,
            scored.c.m,
            literal(at, Utc),
        )
        .select_from(contacts.outerjoin(scored, scored.c.contact_id == contacts.c.id))
        .where(contacts.c.erased_at.is_(None))
    )
    columns = ["contact_id", "recency_days", "frequency", "monetary", "lifetime_revenue",
               "r_score", "f_score", "m_score", "refreshed_at"]
    with engine.begin() as conn:
        conn.execute(delete(contact_traits))
        conn.execute(insert(contact_traits).from_select(columns, rows))
        return int(conn.execute(select(func.count()).select_from(contact_traits)).scalar_one())
