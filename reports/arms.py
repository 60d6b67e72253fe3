"""The data of an A/B test: what each arm did, how it is summarised, what was decided.

Plain frozen dataclasses, JSON-able through ``to_dict``, shared by the fixed-horizon and
sequential decisions (``reports.decide``) and the bandit (``reports.bandit``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from reach.errors import ReachError
from reports.stats import norm_ppf, wilson_interval

Metric = Literal["opened", "clicked", "converted", "revenue"]
Fallback = Literal["keep_split", "send_best", "send_control"]
PROPORTION_METRICS = ("opened", "clicked", "converted")
METRICS = (*PROPORTION_METRICS, "revenue")
FALLBACKS = ("keep_split", "send_best", "send_control")


def check_metric(metric: str) -> None:
    """Refuse a metric name Reach does not know, saying which ones it does."""
    if metric not in METRICS:
        raise ReachError("K103", f"unknown A/B metric {metric!r}",
                         hint=f"use one of: {', '.join(METRICS)}")


@dataclass(frozen=True)
class ArmResult:
    """What one arm did: recipients and human engagement counts, revenue sums."""

    id: str
    n: int
    opened: int = 0
    clicked: int = 0
    converted: int = 0
    revenue_sum: float = 0.0
    revenue_sumsq: float = 0.0  # sum of squared revenue per recipient, for Welch's variance
    unsubscribed: int = 0
    complained: int = 0

    def mean(self, metric: str) -> float:
        """Rate of a proportion metric, or revenue per recipient."""
        if self.n <= 0:
            return 0.0
        return (self.revenue_sum if metric == "revenue" else getattr(self, metric)) / self.n

    def variance(self, metric: str) -> float:
        """Per-recipient variance: p(1-p), or revenue's sample variance (non-buyers are 0)."""
        mean = self.mean(metric)
        if metric != "revenue":
            return mean * (1.0 - mean)
        if self.n < 2:
            return 0.0
        return max(0.0, (self.revenue_sumsq - self.revenue_sum * mean) / (self.n - 1))


@dataclass(frozen=True)
class ArmSummary:
    """One arm as reports show it: the metric's value with its interval, guardrail rates."""

    id: str
    n: int
    value: float
    ci_low: float
    ci_high: float
    unsubscribe_rate: float
    complaint_rate: float
    excluded: bool


@dataclass(frozen=True)
class Decision:
    """The outcome of an A/B test. ``split`` lists the arms the rest of the audience (or new
    journey arrivals) is sent: one arm after a decision, the eligible arms otherwise."""

    winner: str | None
    outcome: str  # significant | fallback:<name> | not_enough_data
    reason: str
    stats: dict[str, Any]
    arms: tuple[ArmSummary, ...]
    split: tuple[str, ...]
    excluded: tuple[str, ...] = ()
    sequential_state: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the whole decision (non-finite floats become None)."""
        return jsonable(asdict(self))


def jsonable(value: Any) -> Any:
    """Tuples to lists, keys to strings, inf and nan to None: strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def validate_arms(arms: Sequence[ArmResult], metric: str, confidence: float, fallback: str,
                  control_id: str | None, min_per_arm: int) -> str:
    """Check a decision's inputs (codes for what a YAML author can fix); return the control id,
    which defaults to the first arm."""
    check_metric(metric)
    if fallback not in FALLBACKS:
        raise ReachError("K103", f"unknown A/B fallback {fallback!r}",
                         hint=f"use one of: {', '.join(FALLBACKS)}")
    if not 0.5 <= confidence < 1.0:
        raise ReachError("K103", f"A/B confidence {confidence} is out of range",
                         hint="use a value such as 0.9, 0.95 or 0.99")
    if min_per_arm < 0:
        raise ReachError("K103", f"min_per_arm must not be negative, got {min_per_arm}")
    ids = [arm.id for arm in arms]
    if len(ids) < 2 or len(set(ids)) != len(ids):
        raise ReachError("K103", f"an A/B test needs at least two distinct arms, got {ids}",
                         hint="give each variant a unique id")
    for arm in arms:
        counts = [arm.opened, arm.clicked, arm.converted, arm.unsubscribed, arm.complained]
        if arm.n < 0 or any(c < 0 or c > arm.n for c in counts):
            raise ValueError(f"arm {arm.id}: counts must lie between 0 and n={arm.n}")
    control = control_id if control_id is not None else ids[0]
    if control not in ids:
        raise ReachError("K103", f"control {control!r} is not one of the arms {ids}")
    return control


def format_value(metric: str, value: float) -> str:
    """The metric's value as a reason sentence shows it."""
    return f"{value:.4g} per recipient" if metric == "revenue" else f"{value:.2%}"


def summarise(arms: Sequence[ArmResult], metric: str, confidence: float,
              excluded: set[str]) -> tuple[ArmSummary, ...]:
    """Per-arm value and interval: Wilson for rates, normal for revenue per recipient."""
    z = norm_ppf(0.5 + confidence / 2.0)
    out = []
    for arm in arms:
        if metric == "revenue":
            mean = arm.mean(metric)
            # Normal interval: decisions need >= min_per_arm recipients, where t ~ normal.
            half = z * math.sqrt(arm.variance(metric) / arm.n) if arm.n else math.inf
            low, high = mean - half, mean + half
        else:
            low, high = wilson_interval(getattr(arm, metric), arm.n, confidence)
        out.append(ArmSummary(arm.id, arm.n, arm.mean(metric), low, high,
                              arm.mean("unsubscribed"), arm.mean("complained"),
                              arm.id in excluded))
    return tuple(out)
