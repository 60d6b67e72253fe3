"""Compile segment conditions to one parameterised SQLAlchemy Core boolean over ``contacts``.

Semantics, the same on SQLite and PostgreSQL (and in the tests' plain-Python oracle):

* Well-known columns (:data:`COLUMNS`) compare as their SQL type; every other attribute is
  a key of the JSON ``attributes``. Computed traits (:data:`TRAITS`) come from
  ``contact_traits``.
* A JSON value compares only with a value of its own kind: a number with numbers, a string
  with strings (by code point), a boolean with ``eq``/``ne``. Dates in conditions compare
  with ISO 8601 text (``2026-03-01``, ``2026-03-01T09:00:00+00:00``), the form import writes.
* Every leaf is two-valued (never SQL NULL), so ``not`` is exact: ``ne``, ``not_in`` and
  ``exists: false`` are the negations of ``eq``, ``in`` and ``exists: true`` — a contact
  without the attribute matches ``ne``.
* Behaviour (``event``, ``engaged``) compiles to uncorrelated ``id IN (SELECT contact_id …)``
  (``= ANY(ARRAY(…))`` on PostgreSQL: see ``sqlfuncs.InSubquery``)
  sub-queries that the planners run once (hashed) and can drive from the events indexes.
* Relative windows (``within``) are fixed at compile time from :func:`reach.clock.now`.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import String, and_, case, false, func, literal, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from audiences import sqlfuncs as sf
from audiences.audience import (  # noqa: F401 - re-exported: the audience API lives here too
    audience_query,
    contact_dict,
    count,
    eligible_clause,
    explain,
    iter_audience,
)
from audiences.spec import (
    AllGroup,
    AnyGroup,
    AttributeCondition,
    Condition,
    EngagedCondition,
    EventCondition,
    NotGroup,
    SegmentRef,
    SegmentSpec,
)
from reach import clock
from reach.db.schema import contact_traits, contacts, engagements, events, messages
from reach.errors import ReachError

# Well-known columns usable as attributes: name -> kind.
COLUMNS: dict[str, str] = {
    "email": "text", "phone": "text", "first_name": "text", "last_name": "text",
    "country": "text", "timezone": "text", "locale": "text", "external_id": "text",
    "email_status": "text", "sms_status": "text", "created_at": "time",
}
TRAITS = ("recency_days", "frequency", "monetary", "lifetime_revenue",
          "r_score", "f_score", "m_score")

LeafCompiler = Callable[[Any, "CompileContext"], ColumnElement[bool]]


class ConditionError(ReachError):
    """A condition that is well-formed YAML but cannot be compiled (type, name, cycle)."""


@dataclass
class CompileContext:
    """What compiling needs besides the condition; ``extra`` lets journeys add leaf kinds."""

    segments: Mapping[str, SegmentSpec] = field(default_factory=dict)
    now: datetime = field(default_factory=clock.now)
    extra: Mapping[type, LeafCompiler] = field(default_factory=dict)
    stack: tuple[str, ...] = ()

    def compile(self, cond: Any) -> ColumnElement[bool]:
        """Compile one condition (any kind, including groups and extensions)."""
        for kind, fn in self.extra.items():
            if isinstance(cond, kind):
                return fn(cond, self)
        if isinstance(cond, AttributeCondition):
            return _attribute(cond, self)
        if isinstance(cond, EventCondition):
            return _event(cond, self)
        if isinstance(cond, EngagedCondition):
            return _engaged(cond, self)
        if isinstance(cond, SegmentRef):
            return self.segment(cond.segment)
        if isinstance(cond, AllGroup):
            return self.combine(cond.all, "all")
        if isinstance(cond, AnyGroup):
            return self.combine(cond.any, "any")
        if isinstance(cond, NotGroup):
            return not_(self.compile(cond.not_))
        raise ConditionError("K103", f"cannot compile condition {cond!r}")

    def combine(self, conds: Sequence[Any], match: str) -> ColumnElement[bool]:
        """AND (``all``) or OR (``any``) of conditions; empty all is true, empty any false."""
        parts = [self.compile(c) for c in conds]
        if match == "any":
            return or_(false(), *parts) if not parts else or_(*parts)
        return and_(true(), *parts) if not parts else and_(*parts)

    def segment(self, name: str) -> ColumnElement[bool]:
        """The clause of a referenced segment, refusing reference cycles."""
        if name in self.stack:
            chain = " -> ".join((*self.stack, name))
            raise ConditionError("R207", f"segment reference cycle: {chain}",
                                 hint="a segment may not refer to itself, directly or not")
        spec = self.segments.get(name)
        if spec is None:
            raise ConditionError("R202", f"segment {name!r} not found",
                                 hint=f"known segments: {', '.join(sorted(self.segments)) or '-'}")
        inner = CompileContext(self.segments, self.now, self.extra, (*self.stack, name))
        return inner.combine(spec.conditions, spec.match)


_conditions_adapter: TypeAdapter[list[Any]] = TypeAdapter(list[Condition])


def parse_conditions(data: Iterable[Any]) -> list[Any]:
    """Plain dicts (e.g. from JSON) to condition models; raises pydantic's ValidationError."""
    return _conditions_adapter.validate_python(list(data))


def compile_conditions(
    conditions: Sequence[Any],
    match: str = "all",
    *,
    segments: Mapping[str, SegmentSpec] | None = None,
    now: datetime | None = None,
    extra: Mapping[type, LeafCompiler] | None = None,
) -> ColumnElement[bool]:
    """One boolean clause over ``contacts`` for ``conditions`` (models or plain dicts)."""
    if any(isinstance(c, dict) for c in conditions):
        try:
            conditions = parse_conditions(conditions)
        except ValidationError as exc:
            raise ConditionError("K103", f"invalid conditions: {exc}") from exc
    ctx = CompileContext(segments or {}, clock.as_utc(now) or clock.now(), extra or {})
    return ctx.combine(conditions, match)


def segment_clause(
    spec: SegmentSpec,
    segments: Mapping[str, SegmentSpec] | None = None,
    *,
    now: datetime | None = None,
) -> ColumnElement[bool]:
    """The clause of a segment file (its own name counts for cycle detection)."""
    ctx = CompileContext(segments or {}, clock.as_utc(now) or clock.now(), {}, (spec.segment,))
    return ctx.combine(spec.conditions, spec.match)


def check_attributes(
    conditions: Sequence[Any],
    declared: set[str],
    segments: Mapping[str, SegmentSpec] | None = None,
) -> list[str]:
    """Attribute names used in ``conditions`` that are neither known columns, traits nor
    declared; referenced segments are followed (once each)."""
    known = set(COLUMNS) | set(TRAITS) | set(declared)
    unknown: list[str] = []
    seen: set[str] = set()

    def walk(cond: Any) -> None:
        if isinstance(cond, AttributeCondition):
            if cond.attribute not in known and cond.attribute not in unknown:
                unknown.append(cond.attribute)
        elif isinstance(cond, AllGroup):
            for c in cond.all:
                walk(c)
        elif isinstance(cond, AnyGroup):
            for c in cond.any:
                walk(c)
        elif isinstance(cond, NotGroup):
            walk(cond.not_)
        elif isinstance(cond, SegmentRef) and segments and cond.segment not in seen:
            seen.add(cond.segment)
            spec = segments.get(cond.segment)
            for c in spec.conditions if spec else []:
                walk(c)

    for cond in conditions:
        walk(cond)
    return unknown


# --- leaves -----------------------------------------------------------------------------

def _window(column: Any, within: str | None, now: datetime) -> list[ColumnElement[bool]]:
    if within is None:
        return []
    return [column >= now - clock.parse_duration(within), column <= now]


def _as_instant(value: Any, attribute: str) -> datetime:
    if isinstance(value, datetime):
        return clock.as_utc(value)  # type: ignore[return-value]
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    if isinstance(value, str):
        try:
            return clock.parse_instant(value)
        except clock.ClockError:
            pass
    raise ConditionError("K103", f"{attribute} is a date: compare it with a date, got {value!r}",
                         hint="write an ISO date such as 2026-01-31, or use within: 30d")


def iso_text(value: date | datetime) -> str:
    """The ISO text a date or time is compared as inside JSON (UTC, seconds)."""
    if isinstance(value, datetime):
        return clock.as_utc(value).isoformat(timespec="seconds")  # type: ignore[union-attr]
    return value.isoformat()


def _attribute(cond: AttributeCondition, ctx: CompileContext) -> ColumnElement[bool]:
    name = cond.attribute
    if cond.within is not None:
        since = ctx.now - clock.parse_duration(cond.within)
        if name in COLUMNS or name in TRAITS:
            if COLUMNS.get(name) != "time":
                raise ConditionError("K103", f"within needs a date attribute; {name} is not one")
            return and_(*_window(contacts.c.created_at, cond.within, ctx.now))
        text = sf.json_text(contacts.c.attributes, name)
        return and_(sf.json_is(contacts.c.attributes, name, "string"),
                    sf.ordered(text) >= iso_text(since), sf.ordered(text) <= iso_text(ctx.now))
    op, value = cond.operator()
    if name in TRAITS:
        return _trait(name, op, value)
    if name in COLUMNS:
        return _column(name, op, value)
    return json_compare(contacts.c.attributes, name, op, value)


def _negate(op: str, value: Any) -> tuple[str, Any] | None:
    return {"ne": ("eq", value), "not_in": ("in", value)}.get(op) or (
        ("exists", True) if op == "exists" and value is False else None)


def _column(name: str, op: str, value: Any) -> ColumnElement[bool]:
    negated = _negate(op, value)
    if negated:
        return not_(_column(name, *negated))
    col = contacts.c[name]
    if op == "exists":
        return col.is_not(None)
    if COLUMNS[name] == "time":
        if op == "contains":
            raise ConditionError("K103", f"contains does not apply to the date {name}")
        if op == "in":
            return and_(col.is_not(None), col.in_([_as_instant(v, name) for v in value]))
        return and_(col.is_not(None), _compare(col, op, _as_instant(value, name)))
    values = value if op == "in" else [value]
    for v in values:
        if not isinstance(v, str):
            raise ConditionError("K103", f"{name} is text: compare it with text, got {v!r}",
                                 hint=f'quote the value, e.g. "{v}"')
    if name == "email":  # stored lower-cased by import
        values = [v.lower() for v in values]
        value = value.lower() if isinstance(value, str) else value
    if op == "in":
        return and_(col.is_not(None), col.in_(values))
    if op == "contains":
        return and_(col.is_not(None), sf.text_contains(col, value))
    if op == "eq":
        return and_(col.is_not(None), col == value)
    return and_(col.is_not(None), _compare(sf.ordered(col), op, value))


def _trait(name: str, op: str, value: Any) -> ColumnElement[bool]:
    negated = _negate(op, value)
    if negated:
        return not_(_trait(name, *negated))
    col = contact_traits.c[name]
    values = value if op == "in" else [value]
    if op != "exists" and any(isinstance(v, bool) or not isinstance(v, int | float)
                              for v in values):
        raise ConditionError("K103", f"the trait {name} is a number: compare it with numbers")
    if op == "contains":
        raise ConditionError("K103", f"contains does not apply to the number {name}")
    if op == "exists":
        test = col.is_not(None)
    elif op == "in":
        test = col.in_(values)
    else:
        test = _compare(col, op, value)
    return sf.InSubquery(contacts.c.id, select(contact_traits.c.contact_id).where(test))


def _compare(left: Any, op: str, right: Any) -> ColumnElement[bool]:
    return {
        "eq": lambda: left == right, "lt": lambda: left < right, "lte": lambda: left <= right,
        "gt": lambda: left > right, "gte": lambda: left >= right,
    }[op]()


def _either(sqlite_form: ColumnElement[bool], pg_form: ColumnElement[bool]) -> Any:
    return sf.by_dialect(sqlite_form, pg_form)


def _pg_contains(column: Any, key: str, value: Any) -> ColumnElement[bool]:
    return sf.jsonb_contains(column, literal(json.dumps({key: value}), String()))


def _guarded(column: Any, key: str, kind: str, test: ColumnElement[bool]) -> Any:
    """``test`` only where the value is of ``kind``; two-valued. PostgreSQL gets a CASE
    (no separate type predicate whose made-up selectivity would mislead the planner)."""
    return _either(and_(sf.json_is(column, key, kind), test),
                   case((sf.json_is(column, key, kind), test), else_=false()))


def json_compare(column: Any, key: str, op: str, value: Any) -> ColumnElement[bool]:
    """``column[key] <op> value`` on a JSON column, typed by the value (see module doc)."""
    negated = _negate(op, value)
    if negated:
        return not_(json_compare(column, key, *negated))
    if op == "exists":
        return sf.json_is(column, key, "present")
    if op == "in":
        return or_(*(json_compare(column, key, "eq", v) for v in value))
    if op == "contains":
        as_array = _either(sf.json_array_has(column, key, value),
                           _pg_contains(column, key, [value]))
        if isinstance(value, str):
            return or_(_guarded(column, key, "string",
                                sf.text_contains(sf.json_text(column, key), value)), as_array)
        return as_array
    if isinstance(value, bool):
        if op != "eq":
            raise ConditionError("K103", f"{key}: {op} does not apply to true/false",
                                 hint="use eq or ne with a boolean")
        return _either(sf.json_is(column, key, "true" if value else "false"),
                       _pg_contains(column, key, value))
    if isinstance(value, int | float):
        if op == "eq":
            return _either(and_(sf.json_is(column, key, "number"),
                                sf.json_number(column, key) == float(value)),
                           _pg_contains(column, key, value))
        return _guarded(column, key, "number",
                        _compare(sf.json_number(column, key), op, float(value)))
    text = iso_text(value) if isinstance(value, date) else value
    if op == "eq":
        return _either(and_(sf.json_is(column, key, "string"), sf.json_text(column, key) == text),
                       _pg_contains(column, key, text))
    return _guarded(column, key, "string",
                    _compare(sf.ordered(sf.json_text(column, key)), op, text))


def _count_test(n: Any, bounds: list[tuple[str, int]]) -> ColumnElement[bool]:
    return and_(*(not_(n == v) if op == "ne" else _compare(n, op, v) for op, v in bounds))


_PY_OPS = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "lte": operator.le,
           "gt": operator.gt, "gte": operator.ge}


def _zero_passes(bounds: list[tuple[str, int]]) -> bool:
    return all(_PY_OPS[op](0, v) for op, v in bounds)


def _event(cond: EventCondition, ctx: CompileContext) -> ColumnElement[bool]:
    where = [events.c.type == cond.event, *_window(events.c.occurred_at, cond.within, ctx.now)]
    for key, filt in cond.filters():
        op, value = filt.operator()
        where.append(json_compare(events.c.properties, key, op, value))
    sub = select(events.c.contact_id).where(*where)
    bounds = cond.count.bounds()
    if bounds in ([("gte", 1)], [("gt", 0)]):
        return sf.InSubquery(contacts.c.id, sub)
    grouped = sub.group_by(events.c.contact_id)
    n = func.count()
    if _zero_passes(bounds):
        # Contacts with no such event pass: exclude those whose (non-zero) count fails.
        return not_(sf.InSubquery(contacts.c.id, grouped.having(not_(_count_test(n, bounds)))))
    return sf.InSubquery(contacts.c.id, grouped.having(_count_test(n, bounds)))


def _engaged(cond: EngagedCondition, ctx: CompileContext) -> ColumnElement[bool]:
    spec = cond.engaged
    kind, source = spec.kind()
    where = [engagements.c.kind == kind,
             *_window(engagements.c.occurred_at, spec.within, ctx.now)]
    if not spec.include_machine:
        where.append(engagements.c.machine.is_(False))
    if source != "any":
        where.append(engagements.c.message_id.in_(
            select(messages.c.id).where(messages.c.source_name == source)))
    return sf.InSubquery(contacts.c.id, select(engagements.c.contact_id).where(*where))

