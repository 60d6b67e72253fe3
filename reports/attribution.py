"""Conversions and revenue credited to messages (last touch), and the holdout's lift.

The rule (issue 7, REFERENCE.md "ROI"):

* A *touch* is a message reaching a contact (``sent_at`` of a ledger row whose status is
  ``sent``: bounced and failed rows never reached anyone) or a human click on one (machine
  clicks by link scanners are not the contact's doing). Test sends are not touches.
* A goal event is credited to the message of the contact's **latest touch at or before it**,
  across every campaign and journey, provided that touch is no older than the window
  (default: the goal's ``within``). A click renews its message's window; a message that was
  never clicked is measured from its delivery. So each conversion is credited to at most one
  message, and a later message of another campaign takes the credit from an earlier one.
* ``basis="click"`` counts only clicks as touches, ``basis="delivery"`` only deliveries.
* Revenue is the goal event's ``goal.revenue`` property when it is a JSON number (anything
  else counts as a conversion without revenue).

Everything runs in one SQL statement per report on SQLite and PostgreSQL: per conversion, a
correlated "latest touch" lookup served by ``ix_messages_contact`` and
``ix_engagements_contact_kind_time``, then a GROUP BY per (step, variant).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Engine, bindparam, func, select, text

from reach.clock import parse_duration
from reach.db.schema import Utc, messages
from reach.errors import ReachError
from reports.counts import GroupKey, Scope, group_counts, literal_where, touch_span
from reports.stats import two_proportion_ztest, wilson_interval

Basis = Literal["click_or_delivery", "click", "delivery"]
BASES = ("click_or_delivery", "click", "delivery")


@dataclass(frozen=True)
class Window:
    """How conversions are attributed: the window length and which touches open it."""

    within: timedelta
    basis: Basis = "click_or_delivery"

    def to_dict(self) -> dict[str, Any]:
        """JSON form: seconds and basis."""
        return {"within_seconds": int(self.within.total_seconds()), "basis": self.basis}


def resolve_window(goal: dict[str, Any] | None, within: str | None = None,
                   basis: str | None = None) -> Window:
    """The window of a report: explicit options first, else the goal's ``within`` (5d)."""
    chosen = basis or "click_or_delivery"
    if chosen not in BASES:
        raise ReachError("K103", f"unknown attribution basis {chosen!r}",
                         hint=f"use one of: {', '.join(BASES)}")
    try:
        length = parse_duration(within or (goal or {}).get("within") or "5d")
    except ValueError as exc:
        raise ReachError("K103", f"invalid attribution window {within!r}: {exc}",
                         hint="give a duration such as 5d, 12h or 30d") from exc
    if length.total_seconds() <= 0:
        raise ReachError("K103", "the attribution window must be longer than zero",
                         hint="give a duration such as 5d")
    return Window(within=length, basis=chosen)  # type: ignore[arg-type]


def minus_seconds(column: str, seconds: int, dialect: str) -> str:
    """SQL for ``column - seconds`` in the storage format of each dialect.

    SQLite keeps timestamps as ``YYYY-MM-DD HH:MM:SS.ffffff`` text (compared as strings);
    strftime gives milliseconds, so three zeros restore the format. ``seconds`` is an int
    computed here, never user text.
    """
    seconds = int(seconds)
    if dialect == "postgresql":
        return f"({column} - INTERVAL '{seconds} seconds')"
    return f"(strftime('%Y-%m-%d %H:%M:%f', {column}, '-{seconds} seconds') || '000')"


def revenue_sql(column: str, dialect: str) -> str:
    """SQL reading the numeric JSON property ``:prop`` of ``column`` (NULL if not a number)."""
    if dialect == "postgresql":
        return (f"CASE WHEN jsonb_typeof({column} -> :prop) = 'number' "
                f"THEN CAST({column} ->> :prop AS DOUBLE PRECISION) END")
    return (f"CASE WHEN json_type({column}, :path) IN ('integer', 'real') "
            f"THEN CAST(json_extract({column}, :path) AS REAL) END")


def _params(goal: dict[str, Any]) -> dict[str, Any]:
    prop = goal.get("revenue") or ""
    return {"event": goal["event"], "prop": prop, "path": '$."' + prop.replace('"', '') + '"',
            "human": False}


def _touches(window: Window, dialect: str) -> str:
    lo = minus_seconds("c.occurred_at", int(window.within.total_seconds()), dialect)
    deliveries = f"""SELECT t1.id AS mid, t1.sent_at AS at, 0 AS pri FROM messages t1
              WHERE t1.contact_id = c.contact_id AND t1.status = 'sent'
                AND t1.source_kind IN ('campaign', 'journey')
                AND t1.sent_at <= c.occurred_at AND t1.sent_at >= {lo}"""
    clicks = f"""SELECT t2.message_id AS mid, t2.occurred_at AS at, 1 AS pri
              FROM engagements t2
              WHERE t2.contact_id = c.contact_id AND t2.kind = 'click'
                AND t2.machine = :human
                AND t2.occurred_at <= c.occurred_at AND t2.occurred_at >= {lo}"""
    if window.basis == "delivery":
        return deliveries
    if window.basis == "click":
        return clicks
    return f"{deliveries}\n UNION ALL {clicks}"


def _in_credited(dialect: str) -> str:
    # The credited messages are read back by primary key: with a plain join PostgreSQL
    # hashed the whole ledger (a million rows, spilling to disk) to find a few thousand.
    if dialect == "postgresql":
        return "= ANY(ARRAY(SELECT mid FROM by_message))"
    return "IN (SELECT mid FROM by_message)"


def credited_sql(scope_sql: str, window: Window, dialect: str) -> str:
    """The statement behind :func:`attribute` (also timed by the benchmark)."""
    revenue = revenue_sql("e.properties", dialect)
    # The click's message must be a real (non-test) campaign or journey message: the outer
    # join below keeps only this scope's messages, so a test message simply credits nobody.
    return f"""
    WITH conv AS (
        SELECT e.id, e.contact_id, e.occurred_at, {revenue} AS revenue
        FROM events e
        WHERE e.type = :event AND e.occurred_at >= :lo AND e.occurred_at <= :hi
          AND (:after_exclusive = FALSE OR e.occurred_at > :lo)
          AND e.contact_id IN (SELECT contact_id FROM messages
                               WHERE {scope_sql} AND status = 'sent')
    ), credit AS (
        SELECT c.revenue,
               (SELECT t.mid FROM ({_touches(window, dialect)}) t
                ORDER BY t.at DESC, t.pri DESC, t.mid DESC LIMIT 1) AS mid
        FROM conv c
    ), by_message AS (
        SELECT mid, COUNT(*) AS n, SUM(COALESCE(revenue, 0)) AS rev
        FROM credit GROUP BY mid
    ), per_message AS (
        SELECT messages.step_id, messages.variant, messages.id, b.n, b.rev
        FROM messages JOIN by_message b ON b.mid = messages.id
        WHERE {scope_sql} AND messages.id {_in_credited(dialect)}
    )
    SELECT step_id, variant, COUNT(*) AS converters, SUM(n) AS conversions,
           SUM(rev) AS revenue, SUM(rev * rev) AS revenue_sumsq
    FROM per_message GROUP BY step_id, variant"""


def attribute(engine: Engine, where: ColumnElement[bool], goal: dict[str, Any] | None,
              window: Window, span: tuple[Any, Any] | None = None, after: Any = None
              ) -> dict[GroupKey, dict[str, float]]:
    """Conversions credited to the messages selected by ``where``, per (step_id, variant).

    Each group gets ``conversions`` (goal events), ``converters`` (messages with at least
    one: the numerator of a conversion rate), ``revenue`` and ``revenue_sumsq`` (sum over
    messages of the squared revenue per message, for revenue-per-recipient variances).
    ``span`` (first delivery, last touch) bounds the events scanned; it is computed when not
    given (``reports.counts.touch_span`` of the same rows). ``after`` credits only the goal
    events later than it (the stretch a late click adds to an earlier result).
    """
    if not goal or not goal.get("event"):
        return {}
    if span is None:
        span = touch_span(group_counts(engine, where))
    if span is None:  # nothing delivered: nothing to credit
        return {}
    sql = text(credited_sql(literal_where(where, engine), window, engine.dialect.name)
               ).bindparams(bindparam("lo", type_=Utc), bindparam("hi", type_=Utc))
    params = {**_params(goal), "lo": after or span[0], "hi": span[1] + window.within,
              "after_exclusive": after is not None}
    with engine.connect() as conn:
        rows = conn.execute(sql, params).mappings().all()
    return {(r["step_id"], r["variant"]): {
        "conversions": int(r["conversions"] or 0), "converters": int(r["converters"] or 0),
        "revenue": float(r["revenue"] or 0.0), "revenue_sumsq": float(r["revenue_sumsq"] or 0.0),
    } for r in rows}


def _span(engine: Engine, where: ColumnElement[bool]) -> tuple[Any, Any]:
    with engine.connect() as conn:
        row = conn.execute(select(func.min(messages.c.sent_at), func.max(messages.c.sent_at))
                           .where(where, messages.c.sent_at.is_not(None))).one()
    return row[0], row[1]


def _converters_sql(revenue: str) -> str:
    # Every contact with a goal event in the calendar window, with its revenue there.
    return f"""SELECT e.contact_id, COUNT(*) AS k, SUM(COALESCE({revenue}, 0)) AS revenue
               FROM events e WHERE e.type = :event AND e.occurred_at >= :start
                 AND e.occurred_at <= :end GROUP BY e.contact_id"""


def _group_rate(engine: Engine, contacts_sql: str, test_key: str, goal: dict[str, Any],
                start: Any, end: Any) -> tuple[int, int, float]:
    """(contacts, converters, revenue) of a contact set over the calendar window."""
    revenue = revenue_sql("e.properties", engine.dialect.name)
    sql = text(f"""
        SELECT COUNT(*) AS n, SUM(CASE WHEN ev.k IS NULL THEN 0 ELSE 1 END) AS converters,
               SUM(COALESCE(ev.revenue, 0)) AS revenue
        FROM ({contacts_sql}) g
        LEFT JOIN ({_converters_sql(revenue)}) ev ON ev.contact_id = g.contact_id""",
               ).bindparams(bindparam("start", type_=Utc), bindparam("end", type_=Utc))
    params = {**_params(goal), "start": start, "end": end, "key": test_key}
    with engine.connect() as conn:
        row = conn.execute(sql, params).one()
    return int(row[0] or 0), int(row[1] or 0), float(row[2] or 0.0)


def _treated_rate(engine: Engine, scope_sql: str, goal: dict[str, Any], start: Any,
                  end: Any) -> tuple[int, int, float]:
    """(contacts, converters, revenue) of the contacts a scope addressed.

    Not a join of the two sets: each converter (a few percent of a list) is probed in
    ``ix_messages_contact``, 0.16 s on 1M messages where hashing the scope's contacts for
    the join took 0.4 s; the probes never outnumber the converters aggregated anyway.
    """
    revenue = revenue_sql("e.properties", engine.dialect.name)
    count = text(f"SELECT COUNT(DISTINCT contact_id) FROM messages WHERE {scope_sql}")
    converted = text(f"""
        SELECT COUNT(*) AS converters, SUM(COALESCE(ev.revenue, 0)) AS revenue
        FROM ({_converters_sql(revenue)}) ev
        WHERE (SELECT 1 FROM messages WHERE messages.contact_id = ev.contact_id
               AND {scope_sql} LIMIT 1) IS NOT NULL""").bindparams(
        bindparam("start", type_=Utc), bindparam("end", type_=Utc))
    with engine.connect() as conn:
        n = int(conn.execute(count).scalar() or 0)
        row = conn.execute(converted, {**_params(goal), "start": start, "end": end}).one()
    return n, int(row[0] or 0), float(row[1] or 0.0)


def newcombe_diff(x1: int, n1: int, x2: int, n2: int,
                  confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for p1 − p2, built from Wilson intervals:
    sound at small counts and at rates near 0, where the Wald interval is not."""
    p1, p2 = (x1 / n1 if n1 else 0.0), (x2 / n2 if n2 else 0.0)
    l1, u1 = wilson_interval(x1, n1, confidence)
    l2, u2 = wilson_interval(x2, n2, confidence)
    d = p1 - p2
    return (d - ((p1 - l1) ** 2 + (u2 - p2) ** 2) ** 0.5,
            d + ((u1 - p1) ** 2 + (p2 - l2) ** 2) ** 0.5)


def holdout_lift(engine: Engine, scope: Scope, goal: dict[str, Any] | None, window: Window,
                 confidence: float = 0.95) -> dict[str, Any] | None:
    """Conversion rate of the held-out contacts vs the treated ones, and the incremental lift.

    Both groups are measured over the same calendar window, from the first send to the last
    send plus the attribution window, counting any goal event (not only attributed ones):
    that is what a holdout is for. Treated = every contact the scope addressed (intention to
    treat, whether or not the message went out). None when nobody was held out.
    """
    if not goal or not goal.get("event"):
        return None
    first, last = _span(engine, scope.where())
    if first is None or last is None:
        return None
    end = last + window.within
    held = ("SELECT DISTINCT contact_id FROM ab_assignments "
            "WHERE test_key = :key AND phase = 'holdout'")
    n_h, x_h, rev_h = _group_rate(engine, held, scope.test_key, goal, first, end)
    if n_h == 0:
        return None
    n_t, x_t, rev_t = _treated_rate(engine, literal_where(scope.where(), engine), goal,
                                    first, end)
    rate_h, rate_t = x_h / n_h, (x_t / n_t if n_t else 0.0)
    low, high = newcombe_diff(x_t, n_t, x_h, n_h, confidence)
    test = two_proportion_ztest(x_h, n_h, x_t, n_t, confidence=confidence)
    return {
        "holdout_contacts": n_h, "holdout_converters": x_h, "holdout_rate": rate_h,
        "holdout_revenue": round(rev_h, 2),
        "treated_contacts": n_t, "treated_converters": x_t, "treated_rate": rate_t,
        "treated_revenue": round(rev_t, 2),
        "lift": rate_t - rate_h, "lift_ci_low": low, "lift_ci_high": high,
        "relative_lift": (rate_t - rate_h) / rate_h if rate_h else None,
        "incremental_conversions": round((rate_t - rate_h) * n_t, 2),
        "incremental_revenue": round((rev_t / n_t - rev_h / n_h) * n_t, 2) if n_t else 0.0,
        "p_value": test.p_value, "confidence": confidence,
        "method": "difference of conversion rates, Newcombe hybrid score interval; "
                  "pooled two-proportion z-test",
        "window_start": first, "window_end": end,
    }
