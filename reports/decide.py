"""A/B decisions: which arm the rest of the audience gets, and why, in words and numbers.

Rules (issue 7, REFERENCE.md "A/B statistics"):

* Proportion metrics (opened, clicked, converted) use the pooled two-proportion z-test,
  two-sided, no Yates correction; revenue per recipient uses Welch's t-test.
* The best observed arm is compared with every other arm; with more than two arms the
  p-values are Holm-adjusted (or Benjamini-Hochberg on request). It wins only if every
  adjusted p is below 1 - confidence.
* Guardrails: an arm whose unsubscribe or complaint rate is significantly higher than the
  control's (one-sided, same confidence, not adjusted: erring towards blocking) is out of
  the contest and of any split. It can never win.
* Below ``min_per_arm`` recipients in any arm nothing is decided ("not_enough_data"),
  unless the deadline has passed: then the configured fallback applies.
* Not significant: the fallback is applied and named in the outcome. ``send_best`` sends
  the best observed arm (ties go to the first arm listed) and says it was not significant.

``decide_sequential`` applies the same rules with always-valid mSPRT p-values, so a
journey can call it on every tick; its state is returned in ``Decision.sequential_state``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

from reach.errors import ReachError
from reports.arms import (
    FALLBACKS,
    METRICS,
    PROPORTION_METRICS,
    ArmResult,
    ArmSummary,
    Decision,
    Fallback,
    Metric,
    format_value,
    jsonable,
    summarise,
    validate_arms,
)
from reports.bandit import thompson_allocation
from reports.sequential import SequentialTest
from reports.stats import (
    BAYES_MODEL,
    bayes_relative_lift,
    benjamini_hochberg,
    holm,
    norm_sf,
    two_proportion_ztest,
    welch_from_sums,
)

__all__ = [
    "FALLBACKS", "METRICS", "PROPORTION_METRICS", "ArmResult", "ArmSummary", "Decision",
    "Fallback", "Metric", "decide", "decide_sequential", "thompson_allocation",
]

GUARDRAILS = {"unsubscribed": "unsubscribe", "complained": "complaint"}
DEFAULT_MIN_PER_ARM = 100
# mSPRT mixing sd as a share of the pooled mean, fixed at the first look. The pooled mean
# (not the control's) is used because under "no difference" it is independent of the
# difference being tested, so choosing tau from it does not spend any evidence.
TAU_RELATIVE = 0.1
GUARDRAIL_TAU_RELATIVE = 0.5  # guardrails look for large relative harms (e.g. doubling)


# A pair test returns (p-value for "first beats second", details for the stats dict).
PairTest = Callable[[ArmResult, ArmResult], tuple[float, dict[str, Any]]]


def _fixed_pair_test(metric: str, confidence: float) -> PairTest:
    def test(best: ArmResult, other: ArmResult) -> tuple[float, dict[str, Any]]:
        if metric == "revenue":
            res = welch_from_sums(other.revenue_sum, other.revenue_sumsq, other.n,
                                  best.revenue_sum, best.revenue_sumsq, best.n,
                                  confidence=confidence)
            return res.p_value, {"t": res.t, "df": res.df, "diff": res.diff, "lift": res.lift,
                                 "ci_low": res.ci_low, "ci_high": res.ci_high}
        zt = two_proportion_ztest(getattr(other, metric), other.n, getattr(best, metric),
                                  best.n, confidence=confidence)
        return zt.p_value, {"z": zt.z, "chi2": zt.chi2, "diff": zt.diff, "lift": zt.lift,
                            "lift_ci_low": zt.ci_low, "lift_ci_high": zt.ci_high}
    return test


def _fixed_guardrail_p(control: ArmResult, arm: ArmResult, metric: str) -> float:
    """One-sided p for "arm's rate is higher than the control's" (pooled z)."""
    zt = two_proportion_ztest(getattr(control, metric), control.n, getattr(arm, metric), arm.n)
    return norm_sf(zt.z)


def _guardrails(arms: Sequence[ArmResult], control: ArmResult, alpha: float,
                p_worse: Callable[[ArmResult, ArmResult, str], float]
                ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    checks, blocked = [], {}
    for arm in arms:
        if arm.id == control.id:
            continue
        for metric, label in GUARDRAILS.items():
            p = p_worse(control, arm, metric)
            worse = p < alpha
            checks.append({"arm": arm.id, "metric": metric, "rate": arm.mean(metric),
                           "control_rate": control.mean(metric), "p_one_sided": p,
                           "worse": worse})
            if worse and arm.id not in blocked:
                blocked[arm.id] = (
                    f"{arm.id} cannot win: its {label} rate {arm.mean(metric):.2%} is "
                    f"significantly higher than control {control.id}'s "
                    f"{control.mean(metric):.2%} (one-sided p={p:.3g} < {alpha:g}).")
    return checks, blocked


def _best(eligible: Sequence[ArmResult], metric: str) -> tuple[ArmResult, bool]:
    """The best observed arm; ties go to the first arm listed (never a coin flip)."""
    best = max(eligible, key=lambda arm: arm.mean(metric))  # max keeps the first of equals
    tie = sum(1 for arm in eligible if arm.mean(metric) == best.mean(metric)) > 1
    return best, tie


def _check_correction(correction: str) -> None:
    if correction not in ("holm", "bh"):
        raise ReachError("K103", f"unknown multiple-comparison correction {correction!r}",
                         hint="use 'holm' (family-wise error) or 'bh' (false discovery rate)")


def _contest(eligible: Sequence[ArmResult], metric: str, alpha: float, correction: str,
             pair_test: PairTest) -> tuple[ArmResult | None, ArmResult, bool, list[dict]]:
    best, tie = _best(eligible, metric)
    others = [arm for arm in eligible if arm.id != best.id]
    raw, comparisons = [], []
    for other in others:
        p, details = pair_test(best, other)
        raw.append(p)
        comparisons.append({"arm": best.id, "vs": other.id, "p_value": p, **details})
    if len(raw) > 1:
        adjusted = holm(raw) if correction == "holm" else benjamini_hochberg(raw)
    else:
        adjusted = raw
    for comp, p_adj in zip(comparisons, adjusted, strict=True):
        comp["p_adjusted"] = p_adj
    better = all(best.mean(metric) > other.mean(metric) for other in others)
    winner = best if better and all(p < alpha for p in adjusted) else None
    return winner, best, tie, comparisons


def _bayes(arms: Sequence[ArmResult], control: ArmResult, metric: str,
           confidence: float) -> dict[str, Any]:
    rows = []
    for arm in arms:
        if arm.id == control.id:
            continue
        res = bayes_relative_lift(control.mean(metric), control.variance(metric), control.n,
                                  arm.mean(metric), arm.variance(metric), arm.n,
                                  confidence=confidence)
        rows.append({"arm": arm.id, "vs": control.id, **res.to_dict()})
    return {"model": BAYES_MODEL, "vs_control": rows}


def _finish(arms: Sequence[ArmResult], *, metric: str, confidence: float, fallback: str,
            control: ArmResult, blocked: dict[str, str], stats: dict[str, Any],
            verdict: tuple[ArmResult | None, ArmResult, bool, list[dict]] | None,
            short: ArmResult | None, min_per_arm: int, at_deadline: bool,
            state: dict[str, Any] | None, sequential: bool) -> Decision:
    """Turn the contest (or its absence) into outcome, reason sentence, split and stats."""
    alpha = round(1.0 - confidence, 12)  # 0.05, not 0.050000000000000044
    eligible = [arm for arm in arms if arm.id not in blocked]
    notes = list(blocked.values())
    label = "revenue per recipient" if metric == "revenue" else f"{metric} rate"
    winner: ArmResult | None = None
    if short is not None:
        lead = (f"Not enough data: arm {short.id} has {short.n} recipients, below the minimum "
                f"of {min_per_arm} per arm")
    elif verdict is None:  # the guardrails left a single arm: nothing to compare
        winner = eligible[0]
        lead = f"{winner.id} is the only arm left after the guardrails"
    else:
        winner, best, tie, comparisons = verdict
        worst_p = max(c["p_adjusted"] for c in comparisons)
        adj = ""
        if len(comparisons) > 1:
            adj = " (Holm-adjusted)" if stats.get("correction") == "holm" else " (BH-adjusted)"
        test = "mSPRT always-valid" if sequential else (
            "Welch's t-test" if metric == "revenue" else "two-proportion z-test")
        runner = max((a for a in eligible if a.id != best.id), key=lambda a: a.mean(metric))
        figures = (f"{best.id} {format_value(metric, best.mean(metric))} vs {runner.id} "
                   f"{format_value(metric, runner.mean(metric))}")
        if winner is not None:
            lead = (f"{winner.id} wins on {label}: {figures}; {test} p={worst_p:.3g}{adj} "
                    f"< {alpha:g}")
        else:
            lead = (f"No arm is significantly better on {label} at {confidence:.0%} "
                    f"confidence: best observed {figures}, {test} p={worst_p:.3g}{adj} "
                    f">= {alpha:g}")
        stats["tie"] = tie
    if winner is not None:
        outcome, split, tail = "significant", (winner.id,), ""
    elif not at_deadline:
        outcome, split = "not_enough_data", tuple(a.id for a in eligible)
        tail = " Keep splitting and look again." if sequential else " Waiting for more data."
    else:
        outcome = f"fallback:{fallback}"
        if fallback == "keep_split":
            split = tuple(a.id for a in eligible)
            tail = f" Fallback keep_split: the rest stays split between {', '.join(split)}."
        elif fallback == "send_control":
            winner, split = control, (control.id,)
            tail = f" Fallback send_control: sending the control {control.id}."
        else:
            best, tie = _best(eligible, metric)
            winner, split = best, (best.id,)
            tail = (f" Fallback send_best: sending {best.id}, the best observed arm, although "
                    f"the difference is not statistically significant"
                    + (" (tied; the tie goes to the first arm listed)." if tie else "."))
    reason = " ".join([lead + "." + tail, *notes]).strip()
    stats.update({"outcome": outcome, "fallback": fallback, "excluded": sorted(blocked)})
    return Decision(winner=winner.id if winner else None, outcome=outcome, reason=reason,
                    stats=jsonable(stats),
                    arms=summarise(arms, metric, confidence, set(blocked)), split=split,
                    excluded=tuple(a.id for a in arms if a.id in blocked),
                    sequential_state=state)


def decide(arms: Sequence[ArmResult], *, metric: Metric, confidence: float = 0.95,
           fallback: Fallback = "keep_split", control_id: str | None = None,
           sequential_state: dict[str, Any] | None = None, guardrails: bool = True,
           min_per_arm: int = DEFAULT_MIN_PER_ARM, at_deadline: bool | None = None,
           correction: Literal["holm", "bh"] = "holm") -> Decision:
    """Decide a fixed-horizon A/B test once, at ``decide_after``.

    ``control_id`` defaults to the first arm. A fixed-horizon call is at its deadline unless
    ``at_deadline=False``, which turns a too-small sample into "not_enough_data" instead of
    the fallback (for callers that can wait for more data). Passing a ``sequential_state``
    dict (``{}`` on the first look) hands the call to ``decide_sequential``, where
    ``at_deadline`` defaults to False.
    """
    if sequential_state is not None:
        return decide_sequential(arms, metric=metric, confidence=confidence, fallback=fallback,
                                 control_id=control_id, state=sequential_state,
                                 guardrails=guardrails, min_per_arm=min_per_arm,
                                 at_deadline=bool(at_deadline), correction=correction)
    control_key = validate_arms(arms, metric, confidence, fallback, control_id, min_per_arm)
    _check_correction(correction)
    control = next(arm for arm in arms if arm.id == control_key)
    alpha = round(1.0 - confidence, 12)  # 0.05, not 0.050000000000000044
    stats: dict[str, Any] = {
        "metric": metric, "confidence": confidence, "alpha": alpha, "control": control.id,
        "min_per_arm": min_per_arm, "method": "fixed-horizon",
        "test": ("Welch's t-test, two-sided" if metric == "revenue" else
                 "pooled two-proportion z-test, two-sided, no Yates correction"),
        "yates": False,
    }
    checks, blocked = ([], {})
    if guardrails:
        checks, blocked = _guardrails(arms, control, alpha, _fixed_guardrail_p)
    stats["guardrails"] = checks
    stats["bayes"] = _bayes(arms, control, metric, confidence)
    short = next((arm for arm in arms if arm.n < max(min_per_arm, 2)), None)
    eligible = [arm for arm in arms if arm.id not in blocked]
    stats["correction"] = correction if len(eligible) > 2 else None
    verdict = None
    if short is None and len(eligible) > 1:
        verdict = _contest(eligible, metric, alpha, correction,
                           _fixed_pair_test(metric, confidence))
        stats["comparisons"] = verdict[3]
    return _finish(arms, metric=metric, confidence=confidence, fallback=fallback,
                   control=control, blocked=blocked, stats=stats, verdict=verdict, short=short,
                   min_per_arm=min_per_arm, at_deadline=at_deadline is not False or short is None,
                   state=None, sequential=False)


def _pair_key(x: str, y: str) -> tuple[str, str]:
    """Pairs are stored under sorted ids, so the state does not depend on the arms' order;
    the first id plays "a" in the SequentialTest."""
    return (x, y) if x <= y else (y, x)


def _load_state(state: dict[str, Any], metric: str) -> dict[str, Any]:
    if not state:
        return {"version": 1, "method": "msprt", "metric": metric, "looks": 0, "tau": {},
                "tests": {}}
    if state.get("version") != 1 or state.get("method") != "msprt":
        raise ReachError("K103", "unrecognised sequential A/B state",
                         hint="pass the sequential_state of the previous Decision, or {}")
    if state.get("metric") != metric:
        raise ReachError("K103", f"the A/B metric changed from {state.get('metric')!r} to "
                         f"{metric!r} during a sequential test",
                         hint="start a new test (with an empty state) to change the metric")
    return {**state, "tau": dict(state["tau"]),
            "tests": {m: {a: dict(inner) for a, inner in by_arm.items()}
                      for m, by_arm in state["tests"].items()}}


def _update_metric(state: dict[str, Any], arms: Sequence[ArmResult], metric: str,
                   pairs: list[tuple[str, str]], tau: float | None, relative: float) -> None:
    """One more look at every pair on one metric (in place on the copied state)."""
    taus = state["tau"]
    if metric in taus:
        if tau is not None and not math.isclose(tau, taus[metric]):
            raise ReachError("K103", f"mSPRT tau changed from {taus[metric]} to {tau} "
                             "during a sequential test",
                             hint="tau must stay fixed for a test's p-values to stay valid")
    elif tau is not None:
        taus[metric] = tau
    else:
        total = sum(arm.n for arm in arms)
        pooled = sum(arm.mean(metric) * arm.n for arm in arms) / total if total else 0.0
        if pooled <= 0.0:
            return  # no event yet: nothing to scale tau by, and nothing to learn
        taus[metric] = relative * pooled
    by_id = {arm.id: arm for arm in arms}
    tests = state["tests"].setdefault(metric, {})
    for x, y in pairs:
        first, second = _pair_key(x, y)
        a, b = by_id[first], by_id[second]
        old = tests.get(first, {}).get(second)
        test = SequentialTest.from_state(old) if old else SequentialTest(tau=taus[metric])
        test = test.update_means(a.mean(metric), a.variance(metric), a.n, b.mean(metric),
                                 b.variance(metric), b.n)
        tests.setdefault(first, {})[second] = test.to_state()


def _seq_p_higher(state: dict[str, Any], metric: str, high: str, low: str) -> float:
    """Always-valid p for "arm ``high`` is above arm ``low``" (1 before any look)."""
    first, second = _pair_key(high, low)
    saved = state["tests"].get(metric, {}).get(first, {}).get(second)
    if not saved:
        return 1.0
    return SequentialTest.from_state(saved).p_higher("a" if high == first else "b")


def decide_sequential(arms: Sequence[ArmResult], *, metric: Metric, confidence: float = 0.95,
                      fallback: Fallback = "keep_split", control_id: str | None = None,
                      state: dict[str, Any] | None = None, guardrails: bool = True,
                      min_per_arm: int = DEFAULT_MIN_PER_ARM, at_deadline: bool = False,
                      tau: float | None = None,
                      correction: Literal["holm", "bh"] = "holm") -> Decision:
    """One look at a journey A/B test with the always-valid mSPRT; call it on every tick.

    ``arms`` hold cumulative counts. Pass the previous ``Decision.sequential_state`` (``None``
    or ``{}`` on the first look) and store the returned one. Before ``at_deadline`` an
    undecided test is "not_enough_data" (keep splitting); at the deadline the fallback
    applies. ``tau`` (mixing sd of the effect) defaults to 10 % of the pooled mean at the
    first look and is then fixed in the state. Guardrails use the same mSPRT, one-sided.
    """
    control_key = validate_arms(arms, metric, confidence, fallback, control_id, min_per_arm)
    _check_correction(correction)
    control = next(arm for arm in arms if arm.id == control_key)
    alpha = round(1.0 - confidence, 12)  # 0.05, not 0.050000000000000044
    new_state = _load_state(state or {}, metric)
    short = next((arm for arm in arms if arm.n < max(min_per_arm, 2)), None)
    ids = [arm.id for arm in arms]
    if short is None:  # below the minimum the normal approximation is not trusted: no look
        all_pairs = [(x, y) for i, x in enumerate(ids) for y in ids[i + 1:]]
        _update_metric(new_state, arms, metric, all_pairs, tau, TAU_RELATIVE)
        if guardrails:
            vs_control = [(control.id, arm_id) for arm_id in ids if arm_id != control.id]
            for guard in GUARDRAILS:
                _update_metric(new_state, arms, guard, vs_control, None, GUARDRAIL_TAU_RELATIVE)
        new_state["looks"] += 1
    stats: dict[str, Any] = {
        "metric": metric, "confidence": confidence, "alpha": alpha, "control": control.id,
        "min_per_arm": min_per_arm, "method": "sequential",
        "test": "mixture SPRT (Johari, Pekelis & Walsh 2022), always-valid p-values",
        "tau": new_state["tau"].get(metric), "looks": new_state["looks"],
    }
    checks, blocked = ([], {})
    if guardrails:
        checks, blocked = _guardrails(
            arms, control, alpha,
            lambda ctrl, arm, guard: _seq_p_higher(new_state, guard, arm.id, ctrl.id))
    stats["guardrails"] = checks
    stats["bayes"] = _bayes(arms, control, metric, confidence)
    eligible = [arm for arm in arms if arm.id not in blocked]
    stats["correction"] = correction if len(eligible) > 2 else None
    verdict = None
    if short is None and len(eligible) > 1:

        def pair_test(best: ArmResult, other: ArmResult) -> tuple[float, dict[str, Any]]:
            return _seq_p_higher(new_state, metric, best.id, other.id), {
                "diff": best.mean(metric) - other.mean(metric)}

        verdict = _contest(eligible, metric, alpha, correction, pair_test)
        stats["comparisons"] = verdict[3]
    return _finish(arms, metric=metric, confidence=confidence, fallback=fallback,
                   control=control, blocked=blocked, stats=stats, verdict=verdict, short=short,
                   min_per_arm=min_per_arm, at_deadline=at_deadline, state=new_state,
                   sequential=True)
