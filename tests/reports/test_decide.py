"""A/B decisions: significance, fallbacks, guardrails, Holm, minimum sample, sequential."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from reach.errors import ReachError
from reports.decide import (
    ArmResult,
    Decision,
    decide,
    decide_sequential,
    thompson_allocation,
)
from reports.stats import holm

A = ArmResult("a", 10_000, clicked=200)
B_WINS = ArmResult("b", 10_000, clicked=250)
B_CLOSE = ArmResult("b", 10_000, clicked=210)


def _json(decision: Decision) -> dict:
    return json.loads(json.dumps(decision.to_dict(), allow_nan=False))


def test_significant_winner_with_reference_statistics() -> None:
    d = decide([A, B_WINS], metric="clicked", confidence=0.95)
    assert (d.winner, d.outcome, d.split) == ("b", "significant", ("b",))
    (comp,) = d.stats["comparisons"]
    assert comp["p_value"] == pytest.approx(0.0171258289, abs=1e-10)
    assert comp["z"] == pytest.approx(2.3839951328, abs=1e-9)
    assert d.stats["yates"] is False and "no Yates" in d.stats["test"]
    assert d.stats["bayes"]["model"] == "gaussian-relative-lift (gbstats 0.8)"
    assert d.stats["bayes"]["vs_control"][0]["chance_to_win"] == pytest.approx(0.9835, abs=1e-4)
    assert "b wins" in d.reason and "0.0171" in d.reason
    arm_b = d.arms[1]
    assert arm_b.value == pytest.approx(0.025) and arm_b.ci_low < 0.025 < arm_b.ci_high
    assert _json(d)["winner"] == "b"
    # At 99 % the same data do not decide.
    assert decide([A, B_WINS], metric="clicked", confidence=0.99).winner is None


@pytest.mark.parametrize(("fallback", "winner", "split"), [
    ("keep_split", None, ("a", "b")),
    ("send_best", "b", ("b",)),
    ("send_control", "a", ("a",)),
])
def test_fallbacks_are_named_never_silent(fallback: str, winner: str | None,
                                          split: tuple[str, ...]) -> None:
    d = decide([A, B_CLOSE], metric="clicked", fallback=fallback)
    assert d.outcome == f"fallback:{fallback}"
    assert (d.winner, d.split) == (winner, split)
    assert "No arm is significantly better" in d.reason and fallback in d.reason
    if fallback == "send_best":
        assert "not statistically significant" in d.reason
    assert _json(d)["stats"]["fallback"] == fallback


def test_send_best_tie_goes_to_first_arm_and_says_so() -> None:
    d = decide([ArmResult("x", 500, clicked=20), ArmResult("y", 500, clicked=20)],
               metric="clicked", fallback="send_best")
    assert d.winner == "x" and "tie" in d.reason and d.stats["tie"] is True


def test_control_id_chooses_the_control() -> None:
    d = decide([A, B_CLOSE], metric="clicked", fallback="send_control", control_id="b")
    assert d.winner == "b" and d.stats["control"] == "b"
    with pytest.raises(ReachError) as err:
        decide([A, B_CLOSE], metric="clicked", control_id="z")
    assert err.value.code == "K103"


def test_guardrail_blocks_an_arm_with_more_complaints() -> None:
    control = ArmResult("a", 10_000, clicked=200, unsubscribed=20, complained=2)
    spammy = ArmResult("b", 10_000, clicked=320, unsubscribed=22, complained=15)
    decent = ArmResult("c", 10_000, clicked=260, unsubscribed=21, complained=3)
    d = decide([control, spammy, decent], metric="clicked")
    assert d.excluded == ("b",)
    assert d.winner == "c" and d.outcome == "significant"
    assert "b cannot win" in d.reason and "complaint rate" in d.reason
    assert [a.excluded for a in d.arms] == [False, True, False]
    # Even the fallbacks never pick or keep a blocked arm.
    close = ArmResult("c", 10_000, clicked=205, unsubscribed=21, complained=3)
    for fallback in ("send_best", "keep_split"):
        fb = decide([control, spammy, close], metric="clicked", fallback=fallback)
        assert "b" not in fb.split and fb.winner != "b"
    # Without guardrails the spammy arm wins on clicks.
    assert decide([control, spammy, decent], metric="clicked", guardrails=False).winner == "b"


def test_guardrail_leaving_only_the_control() -> None:
    control = ArmResult("a", 5_000, clicked=100, unsubscribed=10)
    worse = ArmResult("b", 5_000, clicked=180, unsubscribed=40)
    d = decide([control, worse], metric="clicked", fallback="keep_split")
    assert (d.winner, d.split, d.excluded) == ("a", ("a",), ("b",))
    assert "unsubscribe rate" in d.reason and "only arm left" in d.reason


def test_three_arms_use_holm() -> None:
    # Raw p of the best arm c: 0.028 vs a and 0.040 vs b, both under 0.05; Holm makes them
    # 0.057, so no winner. Benjamini-Hochberg (0.040, 0.040) would declare one.
    arms = [ArmResult("a", 5000, clicked=250), ArmResult("b", 5000, clicked=253),
            ArmResult("c", 5000, clicked=300)]
    d = decide(arms, metric="clicked", fallback="keep_split")
    raw = [c["p_value"] for c in d.stats["comparisons"]]
    assert all(p < 0.05 for p in raw)
    assert [c["p_adjusted"] for c in d.stats["comparisons"]] == pytest.approx(holm(raw))
    assert d.winner is None and d.outcome == "fallback:keep_split"
    assert "Holm-adjusted" in d.reason and d.stats["correction"] == "holm"
    bh = decide(arms, metric="clicked", correction="bh")
    assert bh.winner == "c" and "BH-adjusted" in bh.reason
    strong = [*arms[:2], ArmResult("c", 5000, clicked=340)]
    assert decide(strong, metric="clicked").winner == "c"


def test_not_enough_data_then_fallback_at_deadline() -> None:
    small = [ArmResult("a", 80, clicked=2), ArmResult("b", 80, clicked=12)]
    waiting = decide(small, metric="clicked", at_deadline=False)
    assert waiting.outcome == "not_enough_data" and waiting.winner is None
    assert "80 recipients" in waiting.reason and "minimum of 100" in waiting.reason
    late = decide(small, metric="clicked", fallback="send_best", at_deadline=True)
    assert late.outcome == "fallback:send_best" and late.winner == "b"
    assert "not statistically significant" in late.reason
    # The minimum is configurable: with 50 the same data are tested (and win).
    assert decide(small, metric="clicked", min_per_arm=50).outcome == "significant"


def test_revenue_uses_welch() -> None:
    rng = np.random.default_rng(4)
    values = {}
    arms = []
    for name, rate in (("a", 0.03), ("b", 0.05)):
        orders = rng.random(4000) < rate
        rev = np.where(orders, rng.gamma(2.0, 40.0, size=4000), 0.0)
        values[name] = rev
        arms.append(ArmResult(name, 4000, converted=int(orders.sum()),
                              revenue_sum=float(rev.sum()),
                              revenue_sumsq=float((rev**2).sum())))
    d = decide(arms, metric="revenue")
    (comp,) = d.stats["comparisons"]
    ref = stats.ttest_ind(values["b"], values["a"], equal_var=False)
    assert comp["p_value"] == pytest.approx(ref.pvalue, rel=1e-6)
    assert comp["t"] == pytest.approx(ref.statistic, rel=1e-6)
    assert d.winner == "b" and "Welch" in d.reason and "per recipient" in d.reason
    assert d.arms[1].value == pytest.approx(values["b"].mean())


def test_input_errors_carry_codes() -> None:
    for kwargs in ({"metric": "ctr"}, {"metric": "clicked", "fallback": "flip"},
                   {"metric": "clicked", "confidence": 1.2},
                   {"metric": "clicked", "correction": "bonferroni"}):
        with pytest.raises(ReachError) as err:
            decide([A, B_WINS], **kwargs)
        assert err.value.code == "K103" and err.value.hint
    with pytest.raises(ReachError):
        decide([A, A], metric="clicked")
    with pytest.raises(ValueError):
        decide([A, ArmResult("b", 10, clicked=11)], metric="clicked")


def test_sequential_decides_when_the_evidence_is_there() -> None:
    state: dict | None = None
    outcomes = []
    for look in range(1, 16):
        n = 1000 * look
        arms = [ArmResult("a", n, clicked=20 * look), ArmResult("b", n, clicked=30 * look)]
        d = decide_sequential(arms, metric="clicked", state=state)
        state = json.loads(json.dumps(d.sequential_state))  # stored between ticks
        outcomes.append(d.outcome)
        if d.outcome == "significant":
            break
    assert outcomes[0] == "not_enough_data" and outcomes[-1] == "significant"
    assert d.winner == "b" and "mSPRT" in d.reason
    assert state["looks"] == len(outcomes) and state["tau"]["clicked"] == pytest.approx(0.0025)
    # decide() hands a state over to the sequential rule.
    again = decide(arms, metric="clicked", sequential_state=state)
    assert again.sequential_state["looks"] == state["looks"] + 1


def test_sequential_deadline_fallback_and_state_checks() -> None:
    arms = [ArmResult("a", 2000, clicked=40), ArmResult("b", 2000, clicked=44)]
    running = decide_sequential(arms, metric="clicked", fallback="send_control")
    assert running.outcome == "not_enough_data" and running.split == ("a", "b")
    assert "Keep splitting" in running.reason
    via_decide = decide(arms, metric="clicked", fallback="send_control", sequential_state={})
    assert via_decide.outcome == "not_enough_data"  # a sequential look is not the deadline
    done = decide_sequential(arms, metric="clicked", fallback="send_control",
                             state=running.sequential_state, at_deadline=True)
    assert done.outcome == "fallback:send_control" and done.winner == "a"
    with pytest.raises(ReachError, match="metric changed"):
        decide_sequential(arms, metric="opened", state=running.sequential_state)
    with pytest.raises(ReachError, match="tau changed"):
        decide_sequential(arms, metric="clicked", state=running.sequential_state, tau=0.5)
    small = [ArmResult("a", 50, clicked=1), ArmResult("b", 50, clicked=9)]
    first = decide_sequential(small, metric="clicked")
    assert first.outcome == "not_enough_data" and first.sequential_state["looks"] == 0


def test_sequential_guardrail() -> None:
    state = None
    for look in range(1, 11):
        n = 2000 * look
        arms = [ArmResult("a", n, clicked=40 * look, unsubscribed=2 * look),
                ArmResult("b", n, clicked=60 * look, unsubscribed=12 * look)]
        d = decide_sequential(arms, metric="clicked", state=state)
        state = d.sequential_state
    assert d.excluded == ("b",) and d.winner == "a"
    assert "b cannot win" in d.reason


def test_thompson_allocation() -> None:
    arms = [ArmResult("a", 1000, clicked=20), ArmResult("b", 1000, clicked=40),
            ArmResult("c", 1000, clicked=21)]
    shares = thompson_allocation(arms, "clicked", draws=20_000, rng=1)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["b"] > 0.95
    assert shares == thompson_allocation(arms, "clicked", draws=20_000, rng=1)  # seeded
    even = thompson_allocation([ArmResult("a", 1000, clicked=50),
                                ArmResult("b", 1000, clicked=50)], "clicked",
                               rng=np.random.default_rng(2))
    assert even["a"] == pytest.approx(0.5, abs=0.03)
    revenue = thompson_allocation(
        [ArmResult("a", 100, revenue_sum=100.0, revenue_sumsq=10_000.0),
         ArmResult("b", 100, revenue_sum=900.0, revenue_sumsq=90_000.0)], "revenue", rng=3)
    assert revenue["b"] > revenue["a"]
    with pytest.raises(ValueError, match="unique"):
        thompson_allocation([arms[0], arms[0]], "clicked")
