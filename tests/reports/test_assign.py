"""Deterministic assignment: stable, weights honoured, independent streams."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from scipy import stats

from reports.assign import assign_variant, in_holdout, in_test_fraction, uniform

IDS = range(100_000)
VARIANTS = [("a", 50.0), ("b", 30.0), ("c", 20.0)]


def test_assignment_is_deterministic_and_pinned() -> None:
    first = [assign_variant("welcome-ab", i, VARIANTS) for i in range(1000)]
    assert first == [assign_variant("welcome-ab", i, VARIANTS) for i in range(1000)]
    # The scheme itself is pinned: changing it would reassign every running test.
    digest = hashlib.sha256(b"variant\x1fwelcome-ab\x1f42").digest()
    expected = (int.from_bytes(digest[:8], "big") >> 11) / 2**53
    assert uniform("variant", "welcome-ab", 42) == expected
    assert assign_variant("welcome-ab", 42, VARIANTS) == (
        "a" if expected < 0.5 else "b" if expected < 0.8 else "c")


def test_weights_are_honoured_over_100k_ids() -> None:
    counts = Counter(assign_variant("bf-2026", i, VARIANTS) for i in IDS)
    for variant, weight in VARIANTS:
        assert counts[variant] / len(IDS) == pytest.approx(weight / 100, abs=0.01)
    # Same proportions whether weights are percentages or fractions.
    assert assign_variant("k", 7, [("a", 0.5), ("b", 0.5)]) == assign_variant(
        "k", 7, [("a", 50), ("b", 50)])
    zero = Counter(assign_variant("bf-2026", i, [("a", 1), ("off", 0), ("b", 1)])
                   for i in range(20_000))
    assert zero["off"] == 0


def test_different_tests_assign_independently() -> None:
    same = sum(assign_variant("t1", i, [("a", 1), ("b", 1)])
               == assign_variant("t2", i, [("a", 1), ("b", 1)]) for i in range(20_000))
    assert same / 20_000 == pytest.approx(0.5, abs=0.02)


def test_test_fraction_and_holdout_are_independent_of_variant() -> None:
    table = [[0, 0], [0, 0]]
    holdout_by_test = [[0, 0], [0, 0]]
    for i in IDS:
        in_test = in_test_fraction("bf-2026", i, 0.2)
        variant = assign_variant("bf-2026", i, [("a", 1), ("b", 1)])
        table[in_test][variant == "b"] += 1
        holdout_by_test[in_test][in_holdout("bf-2026", i, 0.05)] += 1
    in_test_total = sum(table[1])
    assert in_test_total / len(IDS) == pytest.approx(0.2, abs=0.005)
    holdout_total = holdout_by_test[0][1] + holdout_by_test[1][1]
    assert holdout_total / len(IDS) == pytest.approx(0.05, abs=0.003)
    # Within the test group the split is still 50/50: streams do not correlate.
    assert table[1][1] / in_test_total == pytest.approx(0.5, abs=0.015)
    assert stats.chi2_contingency(table).pvalue > 0.001
    assert stats.chi2_contingency(holdout_by_test).pvalue > 0.001


def test_edges_and_errors() -> None:
    assert not any(in_test_fraction("k", i, 0.0) for i in range(1000))
    assert all(in_holdout("k", i, 1.0) for i in range(1000))
    assert assign_variant("k", 1, [("only", 3)]) == "only"
    assert all(0.0 <= uniform("s", "k", i) < 1.0 for i in range(1000))
    for bad in ([], [("a", 1), ("a", 1)], [("a", -1), ("b", 2)], [("a", 0), ("b", 0)],
                [("a", float("nan"))]):
        with pytest.raises(ValueError):
            assign_variant("k", 1, bad)
    with pytest.raises(ValueError):
        in_test_fraction("k", 1, 1.5)
