"""What each arm of an A/B test did, read from the ledger, engagements and events.

Shared by campaign tests (fixed horizon, decided once) and journey ``ab_test`` steps
(checked every tick with the sequential test). Engagement is human only; a conversion is a
goal event within the goal's window after the message was sent.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, and_, distinct, func, select

from reach.clock import as_utc, parse_duration
from reach.db.schema import engagements, events, messages
from reports.arms import ArmResult


def arm_results(engine: Engine, where: Any, variant_ids: list[str],
                goal: dict[str, Any] | None) -> list[ArmResult]:
    """One :class:`ArmResult` per variant id, over the ledger rows selected by ``where``."""
    e, m = engagements, messages
    sent = and_(where, m.c.status.in_(["sent", "bounced"]))
    per_kind: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        base = dict(conn.execute(select(m.c.variant, func.count()).where(sent)
                                 .group_by(m.c.variant)).all())
        for kind in ("open", "click", "unsubscribe", "complaint"):
            human = e.c.machine.is_(False) if kind in ("open", "click") else True
            per_kind[kind] = dict(conn.execute(
                select(m.c.variant, func.count(distinct(e.c.message_id)))
                .select_from(e.join(m, m.c.id == e.c.message_id))
                .where(sent, e.c.kind == kind, human).group_by(m.c.variant)).all())
        converted, revenue = _conversions(conn, sent, goal or {})
    arms = []
    for vid in variant_ids:
        amounts = revenue.get(vid, [])
        arms.append(ArmResult(
            id=vid, n=int(base.get(vid, 0)), opened=int(per_kind["open"].get(vid, 0)),
            clicked=int(per_kind["click"].get(vid, 0)), converted=int(converted.get(vid, 0)),
            revenue_sum=float(sum(amounts)), revenue_sumsq=float(sum(a * a for a in amounts)),
            unsubscribed=int(per_kind["unsubscribe"].get(vid, 0)),
            complained=int(per_kind["complaint"].get(vid, 0))))
    return arms


def _conversions(conn: Any, sent: Any, goal: dict[str, Any]
                 ) -> tuple[dict[str, int], dict[str, list[float]]]:
    """Converted recipients and their revenue per variant (one entry per recipient)."""
    if not goal.get("event"):
        return {}, {}
    m = messages
    window = parse_duration(goal.get("within", "5d"))
    rows = conn.execute(
        select(m.c.variant, m.c.contact_id, m.c.sent_at, events.c.occurred_at,
               events.c.properties)
        .select_from(m.join(events, and_(events.c.contact_id == m.c.contact_id,
                                         events.c.type == goal["event"],
                                         events.c.occurred_at >= m.c.sent_at)))
        .where(sent, m.c.sent_at.is_not(None))).all()
    per_contact: dict[tuple[str, int], float] = {}
    for r in rows:
        if as_utc(r.occurred_at) > as_utc(r.sent_at) + window:
            continue
        amount = 0.0
        if goal.get("revenue"):
            try:
                amount = float((r.properties or {}).get(goal["revenue"]) or 0)
            except (TypeError, ValueError):
                amount = 0.0
        key = (r.variant, r.contact_id)
        per_contact[key] = per_contact.get(key, 0.0) + amount
    converted: dict[str, int] = {}
    revenue: dict[str, list[float]] = {}
    for (variant, _), amount in per_contact.items():
        converted[variant] = converted.get(variant, 0) + 1
        revenue.setdefault(variant, []).append(amount)
    return converted, revenue
