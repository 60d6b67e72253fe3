"""Campaign figures (PRODUCT.md §10): delivery, engagement, conversions, revenue, cost, ROI.

Counts come from one GROUP BY over the ledger and one over the engagements
(``reports.counts``); conversions and revenue from the last-touch attribution statement
(``reports.attribution``); per-variant intervals and the stored A/B decision from
``reports.variants``. Definitions (REFERENCE.md "ROI"): delivered = sent − bounced,
open rate = unique opens / delivered, CTR = unique clicks / delivered, CTOR = unique clicks /
unique opens, ROI = (revenue − cost) / cost, ROAS = revenue / cost, CPA = cost / conversions.
``open_rate``, ``ctr`` and ``ctor`` count every unique open or click; the ``human_*`` rates
leave out machine-flagged ones and are what the terminal and HTML reports lead with.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, Engine, select

from reach.db.schema import definitions, messages
from reports.attribution import Window, attribute, holdout_lift, resolve_window
from reports.counts import (
    DELIVERY_KEYS,
    ENGAGEMENT_KEYS,
    GroupKey,
    Scope,
    add_up,
    concurrent_engine,
    delivery_query,
    engagement_query,
    in_parallel,
    merge_rows,
    run_parallel,
    timeline,
    touch_span,
)
from reports.variants import DEFAULT_CONFIDENCE, load_decisions, with_intervals

CONVERSION_KEYS = ("conversions", "converters", "revenue", "revenue_sumsq")


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None


def latest_plan(engine: Engine, kind: str, name: str) -> dict[str, Any] | None:
    """The newest stored plan of a campaign or journey (``definitions``), or None."""
    with engine.connect() as conn:
        row = conn.execute(
            select(definitions.c.plan).where(definitions.c.kind == kind,
                                             definitions.c.name == name)
            .order_by(definitions.c.id.desc()).limit(1)).first()
    return dict(row[0]) if row else None


def derive(fig: dict[str, Any], cost_spec: dict[str, Any], fixed: float) -> dict[str, Any]:
    """Rates, cost and returns of one set of figures; ``fixed`` is its share of the fixed cost
    (the whole of it for a campaign, a pro-rata share by messages sent for a variant)."""
    out = dict(fig)
    cost = fixed + float(cost_spec.get("per_email") or 0) * fig.get("sent_email", 0)
    cost += float(cost_spec.get("per_sms") or 0) * fig.get("sms_segments", 0)
    out["cost"] = round(cost, 4)
    out["currency"] = cost_spec.get("currency") or "EUR"
    out["revenue"] = round(float(fig.get("revenue") or 0.0), 2)
    out["conversions"] = int(fig.get("conversions") or 0)
    out["converters"] = int(fig.get("converters") or 0)
    out["open_rate"] = _ratio(fig["opens_unique"], fig["delivered"])
    out["human_open_rate"] = _ratio(fig["opens_human"], fig["delivered"])
    out["ctr"] = _ratio(fig["clicks_unique"], fig["delivered"])
    out["human_ctr"] = _ratio(fig["clicks_human"], fig["delivered"])
    out["ctor"] = _ratio(fig["clicks_unique"], fig["opens_unique"])
    out["human_ctor"] = _ratio(fig["clicks_human"], fig["opens_human"])
    out["conversion_rate"] = _ratio(out["converters"], fig["delivered"])
    out["unsubscribe_rate"] = _ratio(fig["unsubscribes"], fig["delivered"])
    out["roi"] = _ratio(out["revenue"] - cost, cost)
    out["roas"] = _ratio(out["revenue"], cost)
    out["cpa"] = _ratio(cost, out["conversions"])
    return out


def figures_by_group(engine: Engine, where: ColumnElement[bool], goal: dict[str, Any] | None,
                     window: Window) -> dict[GroupKey, dict[str, Any]]:
    """Counts and attributed conversions per (step_id, variant) of the selected messages.

    Attribution runs beside the engagement scan rather than after it: events up to the last
    delivery + window are credited at once; only if a human click came after the last
    delivery are the events of the extra stretch it opens credited afterwards. Each goal
    event is credited on its own, so the two parts add up to the whole.
    """
    groups: dict[GroupKey, dict[str, Any]] = {}
    (delivery,) = in_parallel(engine, delivery_query(where))
    merge_rows(groups, delivery)
    sent_span = touch_span(groups)

    def credit() -> dict[GroupKey, dict[str, float]]:
        return attribute(engine, where, goal, window, sent_span) if sent_span else {}

    engaged, conv_groups = run_parallel(partial(in_parallel, engine, engagement_query(where)),
                                        credit)
    merge_rows(groups, engaged[0])
    span = touch_span(groups)
    if sent_span and span and span[1] > sent_span[1]:
        tail = attribute(engine, where, goal, window, span, after=sent_span[1] + window.within)
        conv_groups = add_groups(conv_groups, tail)
    for key, conv in conv_groups.items():
        groups.setdefault(key, add_up([], DELIVERY_KEYS + ENGAGEMENT_KEYS)).update(conv)
    for fig in groups.values():
        for k in CONVERSION_KEYS:
            fig.setdefault(k, 0)
    return groups


def add_groups(a: dict[GroupKey, dict[str, float]], b: dict[GroupKey, dict[str, float]]
               ) -> dict[GroupKey, dict[str, float]]:
    """Key-wise sums of two attribution results."""
    out = {k: dict(v) for k, v in a.items()}
    for key, fig in b.items():
        into = out.setdefault(key, dict.fromkeys(fig, 0))
        for k, v in fig.items():
            into[k] = into.get(k, 0) + v
    return out


def rollup(groups: list[dict[str, Any]], cost_spec: dict[str, Any], fixed_total: float,
           sent_total: int, confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Any]:
    """Several groups added up, with their pro-rata share of the fixed cost, and intervals."""
    fig = add_up(groups, DELIVERY_KEYS + ENGAGEMENT_KEYS + CONVERSION_KEYS)
    share = fixed_total * fig["sent"] / sent_total if sent_total else 0.0
    return with_intervals(derive(fig, cost_spec, share), confidence)


def variant_rows(groups: dict[GroupKey, dict[str, Any]], cost_spec: dict[str, Any],
                 fixed_total: float, sent_total: int, step: str | None = None,
                 confidence: float = DEFAULT_CONFIDENCE) -> list[dict[str, Any]]:
    """One row per variant of ``step`` (None: a campaign), sorted by id."""
    ids = sorted({v for (s, v) in groups if s == step and v is not None})
    return [{"variant": vid, **rollup([g for (s, v), g in groups.items() if s == step and
                                       v == vid], cost_spec, fixed_total, sent_total,
                                      confidence)}
            for vid in ids]


def campaign_report(engine: Engine, name: str, *, within: str | None = None,
                    basis: str | None = None, with_timeline: bool = False,
                    confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Any]:
    """Every figure of one campaign, as plain JSON-able data.

    ``within`` and ``basis`` override the attribution window (default: the goal's
    ``within``, from a human click else from delivery); ``with_timeline`` adds opens and
    clicks per hour since send (the HTML page's chart).
    """
    engine = concurrent_engine(engine)
    plan = latest_plan(engine, "campaign", name) or {}
    scope = Scope("campaign", name)
    goal = plan.get("goal")
    window = resolve_window(goal, within, basis)
    cost_spec = dict(plan.get("cost") or {})
    fixed = float(cost_spec.get("fixed") or 0)
    groups, holdout = run_parallel(
        partial(figures_by_group, engine, scope.where(), goal, window),
        partial(holdout_lift, engine, scope, goal, window, confidence)
        if plan.get("holdout") else (lambda: None))
    sent_total = sum(g["sent"] for g in groups.values())
    out: dict[str, Any] = {"name": name, "kind": "campaign", "channel": plan.get("channel"),
                           "version": plan.get("version")}
    total = rollup(list(groups.values()), cost_spec, fixed, sent_total, confidence)
    total.pop("revenue_sumsq", None)
    out.update(total)
    out["goal"] = goal
    out["window"] = window.to_dict()
    variants = variant_rows(groups, cost_spec, fixed, sent_total, None, confidence)
    out["variants"] = variants if (plan.get("ab_test") or len(variants) > 1) else []
    decisions = load_decisions(engine, scope.test_key)
    out["decision"] = decisions.get(scope.test_key)
    out["holdout"] = holdout
    if with_timeline:
        out["timeline"] = timeline(engine, scope.where())
    return out


def all_sources(engine: Engine) -> list[tuple[str, str]]:
    """(kind, name) of every campaign and journey that has ledger rows."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(messages.c.source_kind, messages.c.source_name)
            .where(messages.c.source_kind.in_(["campaign", "journey"]))
            .group_by(messages.c.source_kind, messages.c.source_name)
            .order_by(messages.c.source_name)).all()
    return [(r[0], r[1]) for r in rows]


def report_for(engine: Engine, kind: str, name: str, **options: Any) -> dict[str, Any]:
    """The report of a campaign or a journey (options as :func:`campaign_report`)."""
    if kind == "journey":
        from reports.journey import journey_report

        return journey_report(engine, name, **options)
    return campaign_report(engine, name, **options)
