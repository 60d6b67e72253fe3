"""Journey figures per step and per variant of an ab_test step, with the step's decision."""

from __future__ import annotations

from sqlalchemy import Engine

from reports.export import to_csv
from reports.journey import journey_report
from tests.reports_e2e.conftest import T0, D, H, Seeder, define, store_decision

PLAN = {
    "name": "onb", "version": "j1", "goal": {"event": "purchase", "within": "3d",
                                              "revenue": "amount"},
    "order": ["welcome", "pause", "nudge"],
    "nodes": {"welcome": {"id": "welcome", "kind": "email", "next": "pause"},
              "pause": {"id": "pause", "kind": "wait", "next": "nudge"},
              "nudge": {"id": "nudge", "kind": "ab_test", "next": None}},
}


def test_journey_steps_variants_and_decision(engine: Engine) -> None:
    s = Seeder()
    for c in range(1, 11):
        s.message("onb", c, kind="journey", step="welcome")
        s.message("onb", c, kind="journey", step="nudge", variant="a" if c <= 5 else "b",
                  sent_at=T0 + 2 * D, status="bounced" if c == 10 else "sent")
    s.engage("onb:welcome", 1, "click", T0 + H)
    s.event(1, T0 + D, 30)       # welcome's click is the last touch
    s.event(2, T0 + 2 * D + H, 20)  # nudge a, by delivery
    s.event(7, T0 + 3 * D, 10)   # nudge b
    s.event(10, T0 + 3 * D, 99)  # nudge bounced: welcome's window (3 d) still holds it
    s.write(engine, 10)
    define(engine, "journey", PLAN)
    store_decision(engine, "journey:onb:nudge")
    r = journey_report(engine, "onb")
    assert (r["kind"], r["sent"], r["delivered"], r["conversions"], r["revenue"]) == (
        "journey", 20, 19, 4, 159.0)
    steps = {st["step_id"]: st for st in r["steps"]}
    assert "sent" not in steps.get("pause", {})  # the wait step sends nothing
    assert (steps["welcome"]["conversions"], steps["welcome"]["revenue"]) == (2, 129.0)
    nudge = steps["nudge"]
    assert (nudge["sent"], nudge["delivered"], nudge["conversions"]) == (10, 9, 2)
    a, b = nudge["variants"]
    assert (a["variant"], a["conversions"], a["revenue"]) == ("a", 1, 20.0)
    assert (b["variant"], b["delivered"], b["revenue"]) == ("b", 4, 10.0)
    assert nudge["decision"]["test_key"] == "journey:onb:nudge"
    assert r["roi"] is None  # no cost: ROI is undefined, not infinite
    levels = [line.split(",")[:5] for line in to_csv([r]).splitlines()[1:]]
    assert levels == [["journey", "journey", "onb", "", ""],
                      ["step", "journey", "onb", "welcome", ""],
                      *([["step", "journey", "onb", "pause", ""]] if "pause" in steps else []),
                      ["step", "journey", "onb", "nudge", ""],
                      ["variant", "journey", "onb", "nudge", "a"],
                      ["variant", "journey", "onb", "nudge", "b"]]
