"""Multi-armed bandit for recurring sends: Thompson-sampling traffic shares."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from reports.arms import ArmResult, Metric, check_metric


def thompson_allocation(arms: Sequence[ArmResult], metric: Metric, draws: int = 10000,
                        rng: Any = None) -> dict[str, float]:
    """Thompson-sampling traffic shares for a recurring send (multi-armed bandit).

    Each arm's share is the posterior probability that it is the best: proportions use
    Beta(1 + successes, 1 + failures) posteriors; revenue per recipient a normal
    approximation N(mean, var/n) (with the pooled variance for arms without variance yet).
    ``rng`` is a numpy Generator or a seed. Shares sum to 1.
    """
    import numpy as np

    check_metric(metric)
    if not arms or draws < 1:
        raise ValueError("thompson_allocation needs at least one arm and one draw")
    if len({arm.id for arm in arms}) != len(arms):
        raise ValueError(f"arm ids must be unique, got {[arm.id for arm in arms]}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if metric == "revenue":
        total = sum(arm.n for arm in arms)
        pooled = (sum(arm.variance(metric) * max(arm.n - 1, 0) for arm in arms)
                  / max(total - len(arms), 1))
        means = np.array([arm.mean(metric) for arm in arms])
        sds = np.array([math.sqrt((arm.variance(metric) or pooled) / max(arm.n, 1))
                        for arm in arms])
        samples = gen.normal(means, sds, size=(draws, len(arms)))
    else:
        wins = np.array([getattr(arm, metric) for arm in arms], dtype=float)
        sizes = np.array([arm.n for arm in arms], dtype=float)
        samples = gen.beta(1.0 + wins, 1.0 + sizes - wins, size=(draws, len(arms)))
    counts = np.bincount(samples.argmax(axis=1), minlength=len(arms))
    return {arm.id: float(c) / draws for arm, c in zip(arms, counts, strict=True)}
