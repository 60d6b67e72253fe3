"""Each statistic against the REFERENCE.md vectors and against scipy on random inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from reports.stats import (
    bayes_chance_to_win,
    benjamini_hochberg,
    beta_binomial_prob_b_beats_a,
    chi2_yates,
    holm,
    sample_size,
    two_proportion_ztest,
    welch_from_samples,
    welch_from_sums,
    welch_ttest,
    wilson_interval,
)


def _random_counts(rng: np.random.Generator, size: int) -> list[tuple[int, int, int, int]]:
    out = []
    for _ in range(size):
        n_a, n_b = (int(v) for v in rng.integers(20, 50_000, size=2))
        rate = rng.uniform(0.005, 0.6)
        x_a = int(rng.binomial(n_a, rate))
        x_b = int(rng.binomial(n_b, rate * rng.uniform(0.8, 1.25)))
        out.append((x_a, n_a, x_b, n_b))
    return out


def test_ztest_reference_vector_is_uncorrected_chi_square() -> None:
    res = two_proportion_ztest(200, 10_000, 250, 10_000)
    assert res.z == pytest.approx(2.3839951328, abs=1e-9)
    assert res.p_value == pytest.approx(0.0171258289, abs=1e-10)
    assert res.chi2 == pytest.approx(5.6834327934, abs=1e-9)
    assert res.yates is False
    assert res.lift == pytest.approx(0.25)
    assert res.ci_low < res.lift < res.ci_high
    chi2, p = chi2_yates(200, 10_000, 250, 10_000)
    assert chi2 == pytest.approx(5.4583688548, abs=1e-9)
    assert p == pytest.approx(0.0194748183, abs=1e-10)


def test_ztest_and_yates_match_scipy_on_random_tables() -> None:
    rng = np.random.default_rng(7)
    for x_a, n_a, x_b, n_b in _random_counts(rng, 200):
        table = [[x_a, n_a - x_a], [x_b, n_b - x_b]]
        plain = stats.chi2_contingency(table, correction=False)
        res = two_proportion_ztest(x_a, n_a, x_b, n_b)
        assert res.chi2 == pytest.approx(plain.statistic, rel=1e-9)
        assert res.p_value == pytest.approx(plain.pvalue, rel=1e-7, abs=1e-300)
        assert math.copysign(1, res.z) == math.copysign(1, x_b / n_b - x_a / n_a) or res.z == 0
        yates = stats.chi2_contingency(table, correction=True)
        chi2, p = chi2_yates(x_a, n_a, x_b, n_b)
        assert chi2 == pytest.approx(yates.statistic, rel=1e-9, abs=1e-12)
        assert p == pytest.approx(yates.pvalue, rel=1e-7, abs=1e-300)


def test_ztest_degenerate_inputs_carry_no_evidence() -> None:
    assert two_proportion_ztest(0, 100, 0, 100).p_value == 1.0
    assert two_proportion_ztest(100, 100, 100, 100).p_value == 1.0
    assert two_proportion_ztest(0, 0, 5, 10).p_value == 1.0
    assert two_proportion_ztest(0, 100, 5, 100).lift is None
    with pytest.raises(ValueError, match="successes"):
        two_proportion_ztest(11, 10, 5, 10)


def test_bayes_reference_vector_gbstats_model() -> None:
    res = bayes_chance_to_win(49, 100, 51, 100)
    assert res.model == "gaussian-relative-lift (gbstats 0.8)"
    assert res.expected_lift == pytest.approx(0.04082, abs=5e-6)
    assert res.sd == pytest.approx(0.14725, abs=5e-6)
    assert res.chance_to_win == pytest.approx(0.60918, abs=5e-6)
    assert res.ci_low == pytest.approx(-0.24779, abs=5e-6)
    assert res.ci_high == pytest.approx(0.32943, abs=5e-6)
    # REFERENCE.md: the Gaussian model gives 0.9835 on 200/10k vs 250/10k.
    assert bayes_chance_to_win(200, 10_000, 250, 10_000).chance_to_win == pytest.approx(
        0.9835, abs=5e-5)


def test_bayes_matches_scipy_normal_and_truncated_normal_risk() -> None:
    rng = np.random.default_rng(11)
    for x_a, n_a, x_b, n_b in _random_counts(rng, 100):
        res = bayes_chance_to_win(x_a, n_a, x_b, n_b, confidence=0.9)
        p_a, p_b = x_a / n_a, x_b / n_b
        mu = p_b / p_a - 1
        sd = math.sqrt(p_b * (1 - p_b) / (p_a**2 * n_b)
                       + p_a * (1 - p_a) * p_b**2 / (p_a**4 * n_a))
        assert res.expected_lift == pytest.approx(mu, rel=1e-12)
        assert res.sd == pytest.approx(sd, rel=1e-12)
        assert res.chance_to_win == pytest.approx(stats.norm.sf(0, mu, sd), rel=1e-9, abs=1e-15)
        low, high = stats.norm.ppf([0.05, 0.95], mu, sd)
        assert (res.ci_low, res.ci_high) == pytest.approx((low, high), rel=1e-9)
        # gbstats' get_risk, written with scipy's truncated normal.
        prob_ctrl = stats.norm.cdf(0.0, mu, sd)
        mean_neg = stats.truncnorm.mean(-np.inf, (0 - mu) / sd, loc=mu, scale=sd)
        mean_pos = stats.truncnorm.mean((0 - mu) / sd, np.inf, loc=mu, scale=sd)
        if 1e-12 < prob_ctrl < 1 - 1e-12:
            assert res.expected_loss == pytest.approx(-prob_ctrl * mean_neg, rel=1e-6, abs=1e-12)
            assert res.expected_loss_a == pytest.approx((1 - prob_ctrl) * mean_pos, rel=1e-6,
                                                        abs=1e-12)


def test_bayes_uninformative_when_lift_undefined() -> None:
    res = bayes_chance_to_win(0, 100, 5, 100)
    assert (res.chance_to_win, res.expected_lift, res.sd) == (0.5, 0.0, 0.0)


def test_beta_binomial_reference_and_numerical_integration() -> None:
    assert beta_binomial_prob_b_beats_a(200, 10_000, 250, 10_000) == pytest.approx(
        0.9914228, abs=5e-8)
    rng = np.random.default_rng(3)
    for _ in range(25):
        n_a, n_b = (int(v) for v in rng.integers(5, 3000, size=2))
        x_a = int(rng.binomial(n_a, 0.1))
        x_b = int(rng.binomial(n_b, 0.11))
        dist_a = stats.beta(1 + x_a, 1 + n_a - x_a)
        dist_b = stats.beta(1 + x_b, 1 + n_b - x_b)
        lo = max(0.0, min(dist_a.ppf(1e-12), dist_b.ppf(1e-12)))
        hi = min(1.0, max(dist_a.isf(1e-12), dist_b.isf(1e-12)))
        expected, _ = integrate.quad(lambda t, a=dist_a, b=dist_b: b.pdf(t) * a.cdf(t), lo, hi,
                                     limit=200, epsabs=1e-12, epsrel=1e-10)
        got = beta_binomial_prob_b_beats_a(x_a, n_a, x_b, n_b)
        assert got == pytest.approx(expected, abs=1e-7)
        # Symmetry: exactly one of the two arms is higher.
        assert got + beta_binomial_prob_b_beats_a(x_b, n_b, x_a, n_a) == pytest.approx(1.0)


def test_beta_binomial_large_counts_stay_finite() -> None:
    prob = beta_binomial_prob_b_beats_a(20_000, 1_000_000, 20_300, 1_000_000)
    assert 0.9 < prob < 1.0
    assert beta_binomial_prob_b_beats_a(0, 10, 0, 10) == pytest.approx(0.5)


def test_welch_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        a = rng.exponential(3.0, size=int(rng.integers(2, 400))) * (rng.random() < 0.9)
        b = rng.exponential(3.5, size=int(rng.integers(2, 400)))
        ref = stats.ttest_ind(b, a, equal_var=False)
        ci = ref.confidence_interval(0.9)
        got = welch_from_samples(a, b, confidence=0.9)
        assert got.t == pytest.approx(ref.statistic, rel=1e-9)
        assert got.df == pytest.approx(ref.df, rel=1e-9)
        assert got.p_value == pytest.approx(ref.pvalue, rel=1e-7)
        assert (got.ci_low, got.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-8)
        sums = welch_from_sums(a.sum(), (a**2).sum(), a.size, b.sum(), (b**2).sum(), b.size,
                               confidence=0.9)
        assert sums.p_value == pytest.approx(ref.pvalue, rel=1e-6)
        from_stats = stats.ttest_ind_from_stats(a.mean(), a.std(ddof=1), a.size, b.mean(),
                                                b.std(ddof=1), b.size, equal_var=False)
        assert got.p_value == pytest.approx(from_stats.pvalue, rel=1e-9)


def test_welch_revenue_per_recipient_counts_non_buyers() -> None:
    # 1,000 recipients per arm; 30 vs 45 orders of 40.00: non-buyers are zeros.
    res = welch_from_sums(30 * 40.0, 30 * 1600.0, 1000, 45 * 40.0, 45 * 1600.0, 1000)
    a = np.r_[np.full(30, 40.0), np.zeros(970)]
    b = np.r_[np.full(45, 40.0), np.zeros(955)]
    assert res.p_value == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue,
                                        rel=1e-9)
    assert res.mean_b == pytest.approx(1.8)
    assert welch_ttest(1.0, 0.0, 10, 1.0, 0.0, 10).p_value == 1.0
    with pytest.raises(ValueError, match="at least 2"):
        welch_ttest(1.0, 1.0, 1, 1.0, 1.0, 10)


def test_sample_size_reference_and_power_identity() -> None:
    assert sample_size(0.20, 0.05) == pytest.approx(1030.2193, abs=1e-4)
    assert sample_size(0.80, 0.05) == pytest.approx(sample_size(0.20, 0.05))  # folded
    rng = np.random.default_rng(9)
    for _ in range(50):
        p, mde = rng.uniform(0.01, 0.5), rng.uniform(0.002, 0.1)
        alpha, power = rng.choice([0.01, 0.05, 0.1]), rng.choice([0.8, 0.9])
        n = sample_size(p, mde, alpha, power)
        # At that n the normal approximation has exactly the requested power.
        sd1 = math.sqrt(2 * p * (1 - p))
        sd2 = math.sqrt(p * (1 - p) + (p + mde) * (1 - p - mde))
        achieved = stats.norm.cdf((mde * math.sqrt(n) - stats.norm.ppf(1 - alpha / 2) * sd1)
                                  / sd2)
        assert achieved == pytest.approx(power, abs=1e-9)
    with pytest.raises(ValueError):
        sample_size(0.2, 0.0)


def _holm_by_definition(p: list[float]) -> list[float]:
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    for rank, i in enumerate(order):
        out[i] = min(1.0, max((m - r) * p[order[r]] for r in range(rank + 1)))
    return out


def test_holm_and_benjamini_hochberg() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    rng = np.random.default_rng(13)
    for _ in range(100):
        p = list(rng.uniform(0, 0.2, size=int(rng.integers(1, 12))))
        assert holm(p) == pytest.approx(_holm_by_definition(p))
        assert benjamini_hochberg(p) == pytest.approx(
            list(stats.false_discovery_control(p, method="bh")))
    with pytest.raises(ValueError):
        holm([1.5])


def test_wilson_interval() -> None:
    low, high = wilson_interval(0, 100)
    assert low == 0.0 and 0.03 < high < 0.04
    low, high = wilson_interval(250, 10_000)
    assert low < 0.025 < high
    ci = stats.binomtest(250, 10_000).proportion_ci(0.95, method="wilson")
    assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-9)
