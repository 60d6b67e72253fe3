"""Always-valid sequential testing: the mixture SPRT (mSPRT).

Johari, Pekelis & Walsh, *Always Valid Inference* (2022). The difference of two arm means,
Ybar - Xbar, is approximately N(theta, sigma^2) with sigma^2 = V/n; mixing the likelihood
ratio over theta ~ N(0, tau^2) gives

    Lambda_n = sqrt(V / (V + n tau^2)) * exp(n^2 tau^2 (Ybar - Xbar)^2 / (2 V (V + n tau^2)))

and the p-value p_n = min(p_{n-1}, 1/Lambda_n), p_0 = 1, is valid at *any* stopping time:
a journey's A/B test can look at it on every tick and still keep its false-positive rate.
With unequal arm sizes the same mixture uses sigma^2 = var_a/n_a + var_b/n_b, which reduces
to V/n when the arms are equal.

The running p-value is also kept per direction (looks where b led, looks where a led).
Each directional p is at least the two-sided one, so each stays valid, and a decision
"b beats a" is never backed by evidence gathered while a was ahead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any


def msprt_log_lambda(mean_a: float, var_a: float, n_a: float, mean_b: float, var_b: float,
                     n_b: float, tau: float) -> float:
    """log Lambda of the normal-mixture SPRT for b - a, from means and per-unit variances.

    No variance at all (both arms all 0 or all 1) carries no usable information under the
    normal approximation, so it yields log Lambda = 0 (Lambda = 1): conservative.
    """
    if tau <= 0.0:
        raise ValueError(f"mixing sd tau must be positive, got {tau}")
    if n_a <= 0 or n_b <= 0:
        return 0.0
    sigma2 = max(var_a, 0.0) / n_a + max(var_b, 0.0) / n_b
    if sigma2 <= 0.0:
        return 0.0
    tau2 = tau * tau
    delta = mean_b - mean_a
    return 0.5 * math.log(sigma2 / (sigma2 + tau2)) + tau2 * delta * delta / (
        2.0 * sigma2 * (sigma2 + tau2))


def msprt(x_bar: float, y_bar: float, n: int, tau: float) -> tuple[float, float]:
    """(V, Lambda_n) for two proportions with n per arm: X the control, Y the challenger.

    V = Xbar(1-Xbar) + Ybar(1-Ybar). Lambda overflows to ``inf`` for overwhelming evidence
    (then 1/Lambda = 0).
    """
    v = x_bar * (1.0 - x_bar) + y_bar * (1.0 - y_bar)
    log_lam = msprt_log_lambda(x_bar, x_bar * (1.0 - x_bar), n, y_bar, y_bar * (1.0 - y_bar),
                               n, tau)
    return v, (math.exp(log_lam) if log_lam < 709.0 else math.inf)


@dataclass(frozen=True)
class SequentialTest:
    """Running always-valid p-values of one comparison (b against a) across looks.

    Immutable: ``update`` returns the next state. ``to_state``/``from_state`` carry it
    between ticks as a small JSON-able dict. ``tau`` must stay the same for the whole test.
    """

    tau: float
    p_value: float = 1.0  # two-sided: min over looks of 1/Lambda
    p_b_higher: float = 1.0  # same, over the looks where b led
    p_a_higher: float = 1.0  # same, over the looks where a led
    looks: int = 0

    def __post_init__(self) -> None:
        if not self.tau > 0.0:
            raise ValueError(f"mixing sd tau must be positive, got {self.tau}")

    def update_means(self, mean_a: float, var_a: float, n_a: float, mean_b: float,
                     var_b: float, n_b: float) -> SequentialTest:
        """The state after one more look, given each arm's cumulative mean and variance."""
        log_lam = msprt_log_lambda(mean_a, var_a, n_a, mean_b, var_b, n_b, self.tau)
        inv = math.exp(-log_lam)  # underflows to 0.0 for overwhelming evidence
        p_b, p_a = self.p_b_higher, self.p_a_higher
        if mean_b > mean_a:
            p_b = min(p_b, inv)
        elif mean_a > mean_b:
            p_a = min(p_a, inv)
        return replace(self, p_value=min(self.p_value, inv, 1.0), p_b_higher=min(p_b, 1.0),
                       p_a_higher=min(p_a, 1.0), looks=self.looks + 1)

    def update(self, x_a: int, n_a: int, x_b: int, n_b: int) -> SequentialTest:
        """The state after one more look at two proportions (cumulative counts)."""
        if n_a <= 0 or n_b <= 0:
            return replace(self, looks=self.looks + 1)
        p_a, p_b = x_a / n_a, x_b / n_b
        return self.update_means(p_a, p_a * (1 - p_a), n_a, p_b, p_b * (1 - p_b), n_b)

    def p_higher(self, arm: str) -> float:
        """Directional p-value for "``arm`` is higher", arm being "a" or "b"."""
        if arm not in ("a", "b"):
            raise ValueError(f"arm must be 'a' or 'b', got {arm!r}")
        return self.p_b_higher if arm == "b" else self.p_a_higher

    def to_state(self) -> dict[str, Any]:
        """The JSON-able state to store until the next look."""
        return {"tau": self.tau, "p": self.p_value, "p_b_higher": self.p_b_higher,
                "p_a_higher": self.p_a_higher, "looks": self.looks}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SequentialTest:
        """Rebuild from ``to_state()`` output."""
        return cls(tau=float(state["tau"]), p_value=float(state["p"]),
                   p_b_higher=float(state["p_b_higher"]),
                   p_a_higher=float(state["p_a_higher"]), looks=int(state["looks"]))
