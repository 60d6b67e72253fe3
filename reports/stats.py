"""A/B statistics: pure functions on per-arm counts and sums, no database.

Conventions (see REFERENCE.md "A/B statistics"):

* Arm ``a`` is the reference (control), arm ``b`` the challenger; a positive difference or
  lift means ``b`` is higher.
* The z-test is the pooled two-proportion test, two-sided, **without** Yates' continuity
  correction: its ``chi2`` equals ``scipy.stats.chi2_contingency(table, correction=False)``.
  ``chi2_yates`` gives the corrected figure (scipy's default on 2x2) for reference only.
* The Bayesian figures follow GrowthBook's gbstats 0.8 model: a Gaussian posterior on the
  relative lift with a flat prior and delta-method variance. ``beta_binomial_prob_b_beats_a``
  is the exact Beta(1,1)-Bernoulli alternative; reports name whichever model they show.

Normal tails come from ``math.erfc`` and quantiles from ``statistics.NormalDist``, so this
module imports in a few milliseconds; scipy and numpy are imported lazily by the few
functions that need them (Student's t, log-beta sums).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from reports.sequential import SequentialTest, msprt, msprt_log_lambda

__all__ = [
    "Bayes", "SequentialTest", "WelchTest", "ZTest", "bayes_chance_to_win", "bayes_relative_lift",
    "benjamini_hochberg", "beta_binomial_prob_b_beats_a", "chi2_yates", "holm", "msprt",
    "msprt_log_lambda", "norm_cdf", "norm_ppf", "norm_sf", "sample_size", "two_proportion_ztest",
    "welch_from_samples", "welch_from_sums", "welch_ttest", "wilson_interval",
]

BAYES_MODEL = "gaussian-relative-lift (gbstats 0.8)"
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def norm_sf(x: float) -> float:
    """Standard normal upper tail P(Z > x), accurate far into the tail (erfc, not 1 - cdf)."""
    return 0.5 * math.erfc(x / _SQRT2)


def norm_cdf(x: float) -> float:
    """Standard normal P(Z <= x)."""
    return 0.5 * math.erfc(-x / _SQRT2)


def norm_ppf(q: float) -> float:
    """Standard normal quantile (Wichura's AS241 via the standard library)."""
    return NormalDist().inv_cdf(q)


def _check_counts(x: float, n: float, arm: str) -> None:
    if n < 0 or x < 0 or x > n:
        raise ValueError(f"arm {arm}: need 0 <= successes <= recipients, got {x}/{n}")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")


@dataclass(frozen=True)
class ZTest:
    """Pooled two-proportion z-test, two-sided. ``chi2 == z**2``; Yates is not applied.

    ``lift`` is ``rate_b / rate_a - 1``; ``ci_low``/``ci_high`` bound that lift at
    ``confidence`` (delta method, unpooled variance). Lift and interval are None when
    ``rate_a`` is 0 (a relative lift over nothing is undefined).
    """

    z: float
    p_value: float
    chi2: float
    rate_a: float
    rate_b: float
    diff: float
    lift: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    yates: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return asdict(self)


def _relative_lift_sd(mean_a: float, var_a: float, n_a: float, mean_b: float, var_b: float,
                      n_b: float) -> float:
    """Delta-method sd of mean_b/mean_a - 1 (gbstats' relative variance)."""
    var = var_b / (mean_a**2 * n_b) + var_a * mean_b**2 / (mean_a**4 * n_a)
    return math.sqrt(var)


def two_proportion_ztest(x_a: int, n_a: int, x_b: int, n_b: int, *,
                         confidence: float = 0.95) -> ZTest:
    """Pooled two-proportion z-test of b against a, two-sided, no continuity correction.

    Equals ``chi2_contingency([[x_a, n_a-x_a], [x_b, n_b-x_b]], correction=False)``. With no
    information (an empty arm, or both rates 0 or both 1) it reports z = 0 and p = 1.
    """
    _check_counts(x_a, n_a, "a")
    _check_counts(x_b, n_b, "b")
    _check_confidence(confidence)
    rate_a = x_a / n_a if n_a else 0.0
    rate_b = x_b / n_b if n_b else 0.0
    diff = rate_b - rate_a
    z, p_value = 0.0, 1.0
    if n_a and n_b:
        pooled = (x_a + x_b) / (n_a + n_b)
        se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
        if se > 0.0:
            z = diff / se
            p_value = min(1.0, 2.0 * norm_sf(abs(z)))
    lift = ci_low = ci_high = None
    if rate_a > 0.0 and n_b:
        lift = rate_b / rate_a - 1.0
        sd = _relative_lift_sd(rate_a, rate_a * (1 - rate_a), n_a, rate_b, rate_b * (1 - rate_b),
                               n_b)
        half = norm_ppf(0.5 + confidence / 2.0) * sd
        ci_low, ci_high = lift - half, lift + half
    return ZTest(z=z, p_value=p_value, chi2=z * z, rate_a=rate_a, rate_b=rate_b, diff=diff,
                 lift=lift, ci_low=ci_low, ci_high=ci_high, confidence=confidence)


def chi2_yates(x_a: int, n_a: int, x_b: int, n_b: int) -> tuple[float, float]:
    """Chi-square with Yates' continuity correction on the 2x2 table: ``(chi2, p)``.

    For reference only (it is scipy's default for 2x2 tables and more conservative); Reach's
    decisions use the uncorrected test. Like scipy, the correction never exceeds |O - E|.
    """
    _check_counts(x_a, n_a, "a")
    _check_counts(x_b, n_b, "b")
    total = n_a + n_b
    cols = (x_a + x_b, total - x_a - x_b)
    rows = (n_a, n_b)
    if total == 0 or 0 in cols or 0 in rows:
        return 0.0, 1.0
    # In a 2x2 table |O - E| is the same in all four cells.
    gap = abs(x_a - rows[0] * cols[0] / total)
    gap = max(0.0, gap - 0.5)
    chi2 = sum(gap**2 / (rows[i] * cols[j] / total) for i in range(2) for j in range(2))
    return chi2, math.erfc(math.sqrt(chi2 / 2.0))


def wilson_interval(x: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (sane at 0 and at small n, unlike Wald)."""
    _check_counts(x, n, "")
    _check_confidence(confidence)
    if n == 0:
        return 0.0, 1.0
    z = norm_ppf(0.5 + confidence / 2.0)
    denom = n + z * z
    centre = (x + z * z / 2.0) / denom
    half = z / denom * math.sqrt(x * (n - x) / n + z * z / 4.0)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Bayes:
    """Posterior of the relative lift of b over a (``model`` names the model).

    ``expected_loss`` is gbstats' "risk" of choosing b: the expected relative lift given up
    if a is in fact better, E[max(0, -lift)] under the posterior. ``expected_loss_a`` is the
    same for keeping a, E[max(0, lift)]. Both are in relative-lift units (0.01 = 1 %).
    """

    model: str
    expected_lift: float
    sd: float
    chance_to_win: float
    ci_low: float
    ci_high: float
    expected_loss: float
    expected_loss_a: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return asdict(self)


def bayes_relative_lift(mean_a: float, var_a: float, n_a: float, mean_b: float, var_b: float,
                        n_b: float, *, confidence: float = 0.95) -> Bayes:
    """gbstats 0.8 Gaussian model on the relative lift for any metric given means and variances.

    Flat prior, so the posterior is N(mean_b/mean_a - 1, delta-method variance). Like gbstats
    it returns an uninformative result (chance 0.5, zero lift) when the lift is undefined:
    an empty arm, a zero control mean, or no variance at all.
    """
    _check_confidence(confidence)
    if n_a <= 0 or n_b <= 0 or mean_a == 0.0 or (var_a <= 0.0 and var_b <= 0.0):
        return Bayes(BAYES_MODEL, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0)
    mu = mean_b / mean_a - 1.0
    sd = _relative_lift_sd(mean_a, max(var_a, 0.0), n_a, mean_b, max(var_b, 0.0), n_b)
    half = norm_ppf(0.5 + confidence / 2.0) * sd
    # Closed forms of gbstats' truncated-normal risks: E[max(0, L)] and E[max(0, -L)].
    k = mu / sd
    density = sd * _INV_SQRT_2PI * math.exp(-0.5 * k * k)
    loss_a = mu * norm_cdf(k) + density
    loss_b = density - mu * norm_cdf(-k)
    return Bayes(model=BAYES_MODEL, expected_lift=mu, sd=sd, chance_to_win=norm_sf(-k),
                 ci_low=mu - half, ci_high=mu + half, expected_loss=max(loss_b, 0.0),
                 expected_loss_a=max(loss_a, 0.0))


def bayes_chance_to_win(x_a: int, n_a: int, x_b: int, n_b: int, *,
                        confidence: float = 0.95) -> Bayes:
    """Chance that b beats a on a proportion, gbstats 0.8 model (Bernoulli variance p(1-p))."""
    _check_counts(x_a, n_a, "a")
    _check_counts(x_b, n_b, "b")
    p_a = x_a / n_a if n_a else 0.0
    p_b = x_b / n_b if n_b else 0.0
    return bayes_relative_lift(p_a, p_a * (1 - p_a), n_a, p_b, p_b * (1 - p_b), n_b,
                               confidence=confidence)


def beta_binomial_prob_b_beats_a(x_a: int, n_a: int, x_b: int, n_b: int) -> float:
    """Exact P(p_b > p_a) under independent Beta(1,1) priors (Evan Miller's closed form).

    P = sum_{i < alpha_b} B(alpha_a + i, beta_a + beta_b)
        / ((beta_b + i) B(1 + i, beta_b) B(alpha_a, beta_a)),
    summed in log space (betaln + logsumexp) so large counts neither overflow nor underflow.
    The sum runs over the arm with fewer successes, using P(p_b > p_a) = 1 - P(p_a > p_b).
    """
    _check_counts(x_a, n_a, "a")
    _check_counts(x_b, n_b, "b")
    import numpy as np
    from scipy.special import betaln, logsumexp

    def prob_second_beats_first(a1: float, b1: float, a2: float, b2: float) -> float:
        i = np.arange(int(a2), dtype=float)
        terms = (betaln(a1 + i, b1 + b2) - np.log(b2 + i) - betaln(1.0 + i, b2)
                 - betaln(a1, b1))
        return float(np.exp(logsumexp(terms)))

    alpha_a, beta_a = x_a + 1.0, n_a - x_a + 1.0
    alpha_b, beta_b = x_b + 1.0, n_b - x_b + 1.0
    if alpha_b <= alpha_a:
        prob = prob_second_beats_first(alpha_a, beta_a, alpha_b, beta_b)
    else:
        prob = 1.0 - prob_second_beats_first(alpha_b, beta_b, alpha_a, beta_a)
    return min(1.0, max(0.0, prob))


@dataclass(frozen=True)
class WelchTest:
    """Welch's unequal-variance t-test of b against a, two-sided.

    ``diff = mean_b - mean_a`` with its ``confidence`` interval (t quantile at Welch's df);
    ``lift`` is ``mean_b / mean_a - 1`` or None when ``mean_a`` is 0.
    """

    t: float
    df: float
    p_value: float
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    lift: float | None
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return asdict(self)


def welch_ttest(mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int,
                *, confidence: float = 0.95) -> WelchTest:
    """Welch's t-test from means, sample variances (ddof=1) and sizes.

    Matches ``scipy.stats.ttest_ind_from_stats(..., equal_var=False)``. When neither arm has
    any variance there is nothing to test: t = 0, p = 1 (conservative: no decision), and the
    interval collapses onto the observed difference.
    """
    _check_confidence(confidence)
    if n_a < 2 or n_b < 2:
        raise ValueError(f"Welch's t-test needs at least 2 values per arm, got {n_a} and {n_b}")
    from scipy.special import stdtr, stdtrit

    diff = mean_b - mean_a
    lift = mean_b / mean_a - 1.0 if mean_a != 0 else None
    sa, sb = max(var_a, 0.0) / n_a, max(var_b, 0.0) / n_b
    se2 = sa + sb
    if se2 <= 0.0:
        return WelchTest(0.0, float(n_a + n_b - 2), 1.0, mean_a, mean_b, diff, diff, diff, lift,
                         confidence)
    df = se2**2 / (sa**2 / (n_a - 1) + sb**2 / (n_b - 1))
    se = math.sqrt(se2)
    t = diff / se
    p_value = float(min(1.0, 2.0 * stdtr(df, -abs(t))))
    half = float(stdtrit(df, 0.5 + confidence / 2.0)) * se
    return WelchTest(t=t, df=float(df), p_value=p_value, mean_a=mean_a, mean_b=mean_b, diff=diff,
                     ci_low=diff - half, ci_high=diff + half, lift=lift, confidence=confidence)


def _mean_var(total: float, total_sq: float, n: int) -> tuple[float, float]:
    mean = total / n
    # Clamp: rounding can push sum(x^2) - n*mean^2 a hair below zero.
    var = max(0.0, (total_sq - total * mean) / (n - 1)) if n > 1 else 0.0
    return mean, var


def welch_from_sums(sum_a: float, sumsq_a: float, n_a: int, sum_b: float, sumsq_b: float,
                    n_b: int, *, confidence: float = 0.95) -> WelchTest:
    """Welch's t-test from sufficient statistics: n, sum and sum of squares per arm.

    This is how revenue per recipient is tested: every recipient counts, non-buyers as 0.
    """
    if n_a < 2 or n_b < 2:
        raise ValueError(f"Welch's t-test needs at least 2 values per arm, got {n_a} and {n_b}")
    mean_a, var_a = _mean_var(sum_a, sumsq_a, n_a)
    mean_b, var_b = _mean_var(sum_b, sumsq_b, n_b)
    return welch_ttest(mean_a, var_a, n_a, mean_b, var_b, n_b, confidence=confidence)


def welch_from_samples(a: Sequence[float], b: Sequence[float], *,
                       confidence: float = 0.95) -> WelchTest:
    """Welch's t-test from raw values; equals ``scipy.stats.ttest_ind(a, b, equal_var=False)``
    with the sign of t flipped (ours is b - a)."""
    import numpy as np

    arr_a, arr_b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if arr_a.size < 2 or arr_b.size < 2:
        raise ValueError("Welch's t-test needs at least 2 values per arm")
    return welch_ttest(float(arr_a.mean()), float(arr_a.var(ddof=1)), int(arr_a.size),
                       float(arr_b.mean()), float(arr_b.var(ddof=1)), int(arr_b.size),
                       confidence=confidence)


def sample_size(p: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Recipients needed per arm to detect an absolute change ``mde`` from base rate ``p``.

    Evan Miller's formula, two-sided at ``alpha``:
    n = (z_{a/2} sqrt(2p(1-p)) + z_b sqrt(p(1-p) + (p+d)(1-p-d)))^2 / d^2, with p folded to
    at most 0.5 (a rate and its complement need the same sample). Not rounded: ceil it.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"base rate p must be between 0 and 1, got {p}")
    if mde <= 0.0:
        raise ValueError(f"minimum detectable effect must be positive, got {mde}")
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError("alpha and power must be between 0 and 1")
    if p > 0.5:
        p = 1.0 - p
    if p + mde >= 1.0:
        raise ValueError(f"p + mde must stay below 1, got {p} + {mde}")
    z_alpha = norm_ppf(1.0 - alpha / 2.0)
    z_beta = norm_ppf(power)
    sd1 = math.sqrt(2.0 * p * (1.0 - p))
    sd2 = math.sqrt(p * (1.0 - p) + (p + mde) * (1.0 - p - mde))
    return (z_alpha * sd1 + z_beta * sd2) ** 2 / mde**2


def _check_pvalues(pvalues: Sequence[float]) -> list[float]:
    values = [float(p) for p in pvalues]
    if any(not 0.0 <= p <= 1.0 for p in values):
        raise ValueError(f"p-values must lie in [0, 1], got {values}")
    return values


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error), in the input order."""
    values = _check_pvalues(pvalues)
    m = len(values)
    order = sorted(range(m), key=values.__getitem__)
    adjusted = [0.0] * m
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * values[idx]))
        adjusted[idx] = running
    return adjusted


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in the input order."""
    values = _check_pvalues(pvalues)
    m = len(values)
    order = sorted(range(m), key=values.__getitem__, reverse=True)
    adjusted = [0.0] * m
    running = 1.0
    for position, idx in enumerate(order):
        rank = m - position  # 1-based rank in ascending order
        running = min(running, values[idx] * m / rank)
        adjusted[idx] = running
    return adjusted
