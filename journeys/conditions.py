"""Branch conditions: the segment compiler, extended with the journey-only leaves.

``{opened: STEP}`` / ``{clicked: STEP}`` are human opens / clicks of the ledger row of STEP
*in the contact's current entry* (matched by its idempotency key); ``{converted: true}`` is
the goal event since the contact entered. Each compiles to an uncorrelated
``contacts.id IN (SELECT …)`` so a whole batch is evaluated in one query.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import ColumnElement, Connection, String, and_, cast, false, literal, select

from audiences.compiler import CompileContext
from audiences.spec import SegmentSpec
from journeys.plan import JourneyPlan
from journeys.spec import (
    ClickedCondition,
    ConvertedCondition,
    JourneyCondition,
    OpenedCondition,
)
from reach.db.bulk import among
from reach.db.schema import contacts, engagements, events, journey_states, messages

_adapter: TypeAdapter[Any] = TypeAdapter(JourneyCondition)


def step_key_prefix(journey: str) -> str:
    return f"journey:{journey}:"


def idempotency_key(journey: str, contact_id: int, entry_count: int, step_id: str) -> str:
    """The ledger key of a journey message: one per contact, entry and step."""
    return f"{step_key_prefix(journey)}{contact_id}:{entry_count}:{step_id}"


def _engaged(plan: JourneyPlan, kind: str, step: str) -> ColumnElement[bool]:
    state = journey_states.alias("jst")
    key = (literal(step_key_prefix(plan.name)) + cast(messages.c.contact_id, String)
           + literal(":") + cast(state.c.entry_count, String) + literal(f":{step}"))
    sub = (
        select(messages.c.contact_id)
        .select_from(messages.join(engagements, engagements.c.message_id == messages.c.id)
                     .join(state, and_(state.c.contact_id == messages.c.contact_id,
                                       state.c.journey == plan.name)))
        .where(messages.c.source_kind == "journey", messages.c.source_name == plan.name,
               messages.c.step_id == step, engagements.c.kind == kind,
               engagements.c.machine.is_(False), messages.c.idempotency_key == key)
    )
    return contacts.c.id.in_(sub)


def _converted(plan: JourneyPlan, now: datetime) -> ColumnElement[bool]:
    if not plan.goal:
        return false()
    state = journey_states.alias("jsc")
    sub = (
        select(events.c.contact_id)
        .select_from(events.join(state, and_(state.c.contact_id == events.c.contact_id,
                                             state.c.journey == plan.name)))
        .where(events.c.type == plan.goal["event"], events.c.occurred_at >= state.c.entered_at,
               events.c.occurred_at <= now)
    )
    return contacts.c.id.in_(sub)


def compile_branch(plan: JourneyPlan, condition: dict[str, Any], now: datetime
                   ) -> ColumnElement[bool]:
    """One clause over ``contacts`` for a branch arm's condition (as stored in the plan)."""
    cond = _adapter.validate_python(condition)
    extra = {
        OpenedCondition: lambda c, _ctx: _engaged(plan, "open", c.opened),
        ClickedCondition: lambda c, _ctx: _engaged(plan, "click", c.clicked),
        ConvertedCondition: lambda c, _ctx: (
            _converted(plan, now) if c.converted else ~_converted(plan, now)),
    }
    segments = {k: SegmentSpec.model_validate(v) for k, v in plan.segments.items()}
    return CompileContext(segments, now, extra).compile(cond)


def matching(conn: Connection, ids: Sequence[int], clause: ColumnElement[bool]) -> set[int]:
    """Which of ``ids`` satisfy ``clause``: one query for the whole group."""
    if not ids:
        return set()
    rows = conn.execute(select(contacts.c.id).where(among(conn, contacts.c.id, ids), clause))
    return {r[0] for r in rows}
