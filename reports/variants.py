"""Per-variant figures with intervals, and the stored A/B decisions as reports show them.

Rates use human engagement (machine-flagged opens and clicks are not people) over delivered
messages, each with a Wilson score interval (``reports.stats.wilson_interval``); revenue per
recipient gets a normal interval from the per-message revenue variance.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Engine, select

from reach.clock import as_utc
from reach.db.schema import ab_decisions
from reports.stats import norm_ppf, wilson_interval

DEFAULT_CONFIDENCE = 0.95


def with_intervals(fig: dict[str, Any], confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Any]:
    """``fig`` plus human open, click and conversion rates with Wilson intervals, and revenue
    per recipient with a normal interval (all over delivered messages)."""
    n = int(fig.get("delivered") or 0)
    out = dict(fig)
    for key, count in (("open", "opens_human"), ("click", "clicks_human"),
                       ("conversion", "converters")):
        x = min(int(fig.get(count) or 0), n)  # a message bounced after a click: keep x <= n
        low, high = wilson_interval(x, n, confidence)
        out[f"{key}_rate_human" if key != "conversion" else "conversion_rate"] = (
            x / n if n else None)
        out[f"{key}_ci"] = [low, high] if n else None
    rev, sumsq = float(fig.get("revenue") or 0.0), float(fig.get("revenue_sumsq") or 0.0)
    if n:
        mean = rev / n
        var = max(0.0, (sumsq - rev * mean) / (n - 1)) if n > 1 else 0.0
        half = norm_ppf(0.5 + confidence / 2.0) * math.sqrt(var / n)
        out["revenue_per_recipient"] = mean
        out["revenue_per_recipient_ci"] = [mean - half, mean + half]
    else:
        out["revenue_per_recipient"], out["revenue_per_recipient_ci"] = None, None
    out["confidence"] = confidence
    return out


def load_decisions(engine: Engine, test_key_prefix: str) -> dict[str, dict[str, Any]]:
    """Stored decisions whose ``test_key`` is the prefix itself or starts with ``prefix:``,
    keyed by test key."""
    d = ab_decisions.c
    with engine.connect() as conn:
        rows = conn.execute(select(ab_decisions).where(
            (d.test_key == test_key_prefix) | d.test_key.like(test_key_prefix + ":%")
        )).mappings().all()
    return {r["test_key"]: decision_view(dict(r)) for r in rows}


def decision_view(row: dict[str, Any]) -> dict[str, Any]:
    """A decision row as reports show it: winner, outcome, the sentence and the statistics.

    ``stats`` may hold ``Decision.stats`` or a whole ``Decision.to_dict()``; the reason
    sentence is taken from it when present and otherwise written from the outcome.
    """
    stats = row.get("stats") or {}
    inner = stats.get("stats") if isinstance(stats.get("stats"), dict) else stats
    decided = as_utc(row.get("decided_at"))
    out = {
        "test_key": row["test_key"],
        "decided_at": decided.isoformat() if decided else None,
        "winner": row.get("winner"),
        "outcome": row.get("outcome"),
        "stats": stats,
        "metric": inner.get("metric"),
        "test": inner.get("test"),
        "confidence": inner.get("confidence"),
        "p_value": _worst_p(inner),
        "bayes_model": (inner.get("bayes") or {}).get("model"),
        "chance_to_win": _chance(inner, row.get("winner")),
    }
    out["sentence"] = stats.get("reason") or inner.get("reason") or sentence(out)
    return out


def _worst_p(stats: dict[str, Any]) -> float | None:
    comps = stats.get("comparisons") or []
    ps = [c.get("p_adjusted", c.get("p_value")) for c in comps]
    ps = [p for p in ps if isinstance(p, int | float)]
    return max(ps) if ps else None


def _chance(stats: dict[str, Any], winner: str | None) -> float | None:
    for row in (stats.get("bayes") or {}).get("vs_control") or []:
        if row.get("arm") == winner:
            return row.get("chance_to_win")
    return None


def sentence(decision: dict[str, Any]) -> str:
    """A plain-language sentence for a decision that carries no reason of its own."""
    outcome = str(decision.get("outcome") or "")
    metric = decision.get("metric") or "the metric"
    winner = decision.get("winner")
    p = decision.get("p_value")
    p_txt = f" (p={p:.3g})" if isinstance(p, int | float) else ""
    if outcome == "significant":
        return f"Variant {winner} won on {metric}{p_txt}; the rest was sent {winner}."
    if outcome.startswith("fallback:"):
        rule = outcome.split(":", 1)[1]
        chosen = f" — sending {winner}" if winner else ""
        return (f"No variant was significantly better on {metric}{p_txt}; "
                f"fallback {rule} applied{chosen}.")
    if outcome == "not_enough_data":
        return "Not enough data yet to decide; the split continues."
    return f"Decision: {outcome or 'pending'}."
