"""Attribution edge cases, each on a handful of rows (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from reports.attribution import Window, attribute, newcombe_diff
from reports.counts import Scope
from tests.reports_e2e.conftest import T0, D, H, Seeder, define

GOAL = {"event": "purchase", "within": "2d", "revenue": "amount"}


def _credit(engine: Engine, name: str, basis: str = "click_or_delivery",
            within: timedelta = 2 * D) -> tuple[int, float]:
    groups = attribute(engine, Scope("campaign", name).where(), GOAL, Window(within, basis))  # type: ignore[arg-type]
    return (sum(int(g["conversions"]) for g in groups.values()),
            sum(g["revenue"] for g in groups.values()))


def test_window_boundaries_are_inclusive_and_renewed_by_a_human_click(engine: Engine) -> None:
    s = Seeder()
    for c in (1, 2, 3):
        s.message("x", c)
    s.event(1, T0 + 2 * D, 10)            # exactly at the end of the delivery window: in
    s.event(2, T0 + 2 * D + timedelta(seconds=1), 20)  # one second later: out
    s.engage("x", 3, "click", T0 + D)     # a click renews the window to T0 + 3 d
    s.event(3, T0 + 3 * D - H, 30)
    s.write(engine, 3)
    assert _credit(engine, "x") == (2, 40.0)
    assert _credit(engine, "x", "delivery") == (1, 10.0)
    assert _credit(engine, "x", "click") == (1, 30.0)


def test_last_touch_across_campaigns_and_journeys(engine: Engine) -> None:
    s = Seeder()
    s.message("x", 1)
    s.message("welcome", 1, kind="journey", step="hello", sent_at=T0 + H)
    s.message("y", 2, sent_at=T0 + 2 * H)
    s.message("x", 2, sent_at=T0 + 3 * H)
    s.message("y", 3, status="bounced", sent_at=T0 + H)  # bounced: never reached the contact
    s.message("x", 3)
    s.message("x", 4)
    s.message("y", 4, status="failed")
    for c in (1, 2, 3, 4):
        s.event(c, T0 + D, 5)
    s.write(engine, 4)
    assert _credit(engine, "x") == (3, 15.0)  # 1 went to the journey's later message
    assert _credit(engine, "y") == (0, 0.0)
    groups = attribute(engine, Scope("journey", "welcome").where(), GOAL, Window(2 * D))
    assert groups == {("hello", None): {"conversions": 1, "converters": 1, "revenue": 5.0,
                                        "revenue_sumsq": 25.0}}


def test_same_instant_touches_prefer_the_click(engine: Engine) -> None:
    s = Seeder()
    s.message("x", 1)
    s.message("y", 1, sent_at=T0 + H)
    s.engage("x", 1, "click", T0 + H)  # x's click and y's delivery at the same instant
    s.event(1, T0 + 2 * H, 7)
    s.write(engine, 1)
    assert _credit(engine, "x") == (1, 7.0) and _credit(engine, "y") == (0, 0.0)


def test_revenue_only_from_json_numbers_and_no_goal_means_no_conversions(
        engine: Engine) -> None:
    s = Seeder()
    for c in (1, 2, 3, 4):
        s.message("x", c)
    s.event(1, T0 + H, 12.25)
    s.event(2, T0 + H, "13")   # a string: a conversion without revenue
    s.event(3, T0 + H)         # no amount at all
    s.event(4, T0 + H, 0.75)
    s.write(engine, 4)
    assert _credit(engine, "x") == (4, 13.0)
    assert attribute(engine, Scope("campaign", "x").where(), None, Window(D)) == {}


def test_a_campaign_without_plan_or_goal_still_reports(engine: Engine) -> None:
    from reports.campaign import campaign_report

    s = Seeder()
    s.message("bare", 1)
    s.write(engine, 1)
    r = campaign_report(engine, "bare")
    assert (r["sent"], r["conversions"], r["cost"], r["roi"], r["cpa"]) == (1, 0, 0.0, None, None)
    define(engine, "campaign", {"name": "bare", "channel": "sms", "goal": None,
                                "cost": {"fixed": 1, "per_sms": 0.05}})
    assert campaign_report(engine, "bare")["cost"] == 1.0  # an email row costs no SMS


def test_newcombe_interval_matches_the_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II example (h): 56/70 vs 48/80,
    # method 10 gives 0.0524 to 0.3339.
    low, high = newcombe_diff(56, 70, 48, 80)
    assert round(low, 4) == 0.0524 and round(high, 4) == 0.3339


def test_a_conversion_exactly_at_the_end_of_the_last_window_counts(engine: Engine) -> None:
    s = Seeder()
    s.message("x", 1)
    s.event(1, T0 + 2 * D, 10)  # the last touch of the whole campaign + 2 d, to the microsecond
    s.write(engine, 1)
    assert _credit(engine, "x") == (1, 10.0)


def test_report_credits_the_stretch_a_late_click_opens(engine: Engine) -> None:
    """The report credits events up to the last delivery + window beside the engagement
    scan, then the stretch a later human click adds: together, what attribute() credits."""
    from reports.campaign import figures_by_group

    s = Seeder()
    for c in (1, 2):
        s.message("x", c)
    s.engage("x", 2, "click", T0 + 3 * D)  # clicked after its window had closed
    s.event(1, T0 + D, 10)                  # inside the delivery window
    s.event(2, T0 + 4 * D, 30)              # only inside the click's renewed window
    s.write(engine, 2)
    groups = figures_by_group(engine, Scope("campaign", "x").where(), GOAL, Window(2 * D))
    assert sum(g["conversions"] for g in groups.values()) == 2
    assert sum(g["revenue"] for g in groups.values()) == 40.0
    assert _credit(engine, "x") == (2, 40.0)
