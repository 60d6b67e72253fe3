"""A/A simulations: how often each rule declares a winner when there is none.

1,000 tests per rule, seeded and vectorised where the data are drawn; the rules themselves
are the real ``decide`` / ``decide_sequential`` / z-test. Bounds are ~6.5 % for a nominal
5 % (1,000 Bernoulli(0.05) trials have sd 0.7 %), and naive peeking must be far above it.
"""

from __future__ import annotations

import numpy as np

from reports.decide import ArmResult, decide, decide_sequential
from reports.stats import two_proportion_ztest

TESTS = 1000
LOOKS = 20
RATE = 0.05


def _aa_cumulative(rng: np.random.Generator, arms: int, per_look: int) -> np.ndarray:
    """Cumulative clicks, shape (tests, looks, arms), every arm with the same true rate."""
    return rng.binomial(per_look, RATE, size=(TESTS, LOOKS, arms)).cumsum(axis=1)


def test_fixed_horizon_aa_false_positive_rate() -> None:
    # 4 x 1,000 tests (cheap here): with 1,000 a correct 5 % test lands above 6.5 % for about
    # one seed in 30; with 4,000 the bound sits 4 sd away and the check stays sharp.
    rng = np.random.default_rng(20260101)
    n, sims = 4000, 4 * TESTS
    clicks = rng.binomial(n, RATE, size=(sims, 2))
    wins = sum(
        decide([ArmResult("a", n, clicked=int(a)), ArmResult("b", n, clicked=int(b))],
               metric="clicked", confidence=0.95).outcome == "significant"
        for a, b in clicks)
    assert 0.035 <= wins / sims <= 0.065


def test_three_arm_aa_with_holm_keeps_family_wise_rate() -> None:
    rng = np.random.default_rng(7)
    n = 4000
    clicks = rng.binomial(n, RATE, size=(TESTS, 3))
    wins = sum(
        decide([ArmResult(name, n, clicked=int(c)) for name, c in zip("abc", row, strict=True)],
               metric="clicked").outcome == "significant"
        for row in clicks)
    assert wins / TESTS <= 0.065


def test_fixed_horizon_finds_a_real_effect() -> None:
    rng = np.random.default_rng(3)
    n, sims = 5000, 200
    a = rng.binomial(n, RATE, size=sims)
    b = rng.binomial(n, 0.065, size=sims)
    winners = [decide([ArmResult("a", n, clicked=int(x)), ArmResult("b", n, clicked=int(y))],
                      metric="clicked").winner for x, y in zip(a, b, strict=True)]
    assert winners.count("b") / sims > 0.8
    assert "a" not in winners


def test_naive_peeking_inflates_but_msprt_does_not() -> None:
    rng = np.random.default_rng(42)
    per_look = 250
    clicks = _aa_cumulative(rng, 2, per_look)
    naive = sequential = 0
    for test in clicks:
        state: dict = {}
        peeked = declared = False
        for look in range(LOOKS):
            n = per_look * (look + 1)
            a, b = int(test[look, 0]), int(test[look, 1])
            if not peeked and two_proportion_ztest(a, n, b, n).p_value < 0.05:
                peeked = True
            if not declared:
                decision = decide_sequential(
                    [ArmResult("a", n, clicked=a), ArmResult("b", n, clicked=b)],
                    metric="clicked", confidence=0.95, state=state)
                state = decision.sequential_state or {}
                declared = decision.outcome == "significant"
        naive += peeked
        sequential += declared
    # Peeking at a fixed-horizon test 20 times: roughly a quarter of A/A tests "win".
    assert naive / TESTS > 0.12
    assert sequential / TESTS <= 0.065


def test_sequential_finds_a_real_effect_early() -> None:
    rng = np.random.default_rng(8)
    sims, per_look = 100, 500
    a = rng.binomial(per_look, RATE, size=(sims, LOOKS)).cumsum(axis=1)
    b = rng.binomial(per_look, 0.07, size=(sims, LOOKS)).cumsum(axis=1)
    found_at = []
    for row_a, row_b in zip(a, b, strict=True):
        state: dict = {}
        for look in range(LOOKS):
            n = per_look * (look + 1)
            decision = decide_sequential(
                [ArmResult("a", n, clicked=int(row_a[look])),
                 ArmResult("b", n, clicked=int(row_b[look]))], metric="clicked", state=state)
            state = decision.sequential_state or {}
            if decision.outcome == "significant":
                assert decision.winner == "b"
                found_at.append(look)
                break
    assert len(found_at) / sims > 0.8
    assert float(np.median(found_at)) < LOOKS - 1  # usually well before the last look
