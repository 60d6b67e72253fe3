"""The mixture SPRT: reference vector, an independent derivation, and its running state."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from reports.sequential import SequentialTest, msprt, msprt_log_lambda


def test_msprt_reference_vector() -> None:
    v, lam = msprt(0.02, 0.025, 10_000, 0.01)
    assert v == pytest.approx(0.043975, abs=1e-9)
    assert lam == pytest.approx(3.124283, abs=1e-6)
    test = SequentialTest(tau=0.01).update(200, 10_000, 250, 10_000)
    assert test.p_value == pytest.approx(0.320073, abs=1e-6)
    assert test.p_b_higher == test.p_value and test.p_a_higher == 1.0


def test_lambda_is_the_normal_mixture_likelihood_ratio() -> None:
    # Lambda = integral of N(d; theta, s2) N(theta; 0, tau2) dtheta / N(d; 0, s2)
    #        = N(d; 0, s2 + tau2) / N(d; 0, s2), computed here with scipy.
    rng = np.random.default_rng(1)
    for _ in range(100):
        mean_a, mean_b = rng.uniform(0.01, 0.5, size=2)
        n_a, n_b = (int(v) for v in rng.integers(100, 100_000, size=2))
        tau = rng.uniform(0.001, 0.05)
        var_a, var_b = mean_a * (1 - mean_a), mean_b * (1 - mean_b)
        s = math.sqrt(var_a / n_a + var_b / n_b)
        d = mean_b - mean_a
        expected = (stats.norm.logpdf(d, 0, math.sqrt(s * s + tau * tau))
                    - stats.norm.logpdf(d, 0, s))
        got = msprt_log_lambda(mean_a, var_a, n_a, mean_b, var_b, n_b, tau)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_running_p_never_increases_and_survives_json() -> None:
    rng = np.random.default_rng(2)
    test = SequentialTest(tau=0.005)
    x_a = x_b = n = 0
    previous = 1.0
    for _ in range(30):
        n += 500
        x_a += int(rng.binomial(500, 0.05))
        x_b += int(rng.binomial(500, 0.06))
        test = SequentialTest.from_state(json.loads(json.dumps(test.to_state())))
        test = test.update(x_a, n, x_b, n)
        assert test.p_value <= previous
        assert test.p_value == min(test.p_a_higher, test.p_b_higher)
        previous = test.p_value
    assert test.looks == 30
    assert test.p_b_higher < 0.05  # a real 20 % lift is found
    assert test.p_a_higher == 1.0 or test.p_a_higher > test.p_b_higher


def test_direction_is_tracked_separately() -> None:
    test = SequentialTest(tau=0.01).update(300, 10_000, 200, 10_000)  # a leads
    assert test.p_a_higher < 0.05 and test.p_b_higher == 1.0
    test = test.update(300, 20_000, 600, 20_000)  # then b leads, strongly
    assert test.p_b_higher < 1e-6
    assert test.p_a_higher < 0.05  # a's evidence is not forgotten, nor handed to b


def test_no_variance_is_no_evidence() -> None:
    assert SequentialTest(tau=0.01).update(0, 500, 0, 500).p_value == 1.0
    with pytest.raises(ValueError, match="tau"):
        SequentialTest(tau=0.0)
