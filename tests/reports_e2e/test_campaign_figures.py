"""Campaign figures through real rows on SQLite and PostgreSQL (see conftest for the counts)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from reports.campaign import campaign_report, derive
from reports.stats import wilson_interval


def test_reference_roi_vector_through_derive() -> None:
    # REFERENCE.md "ROI": sent 10,000, bounced 200, 2,450 unique opens, 392 unique clicks,
    # 49 orders, revenue 4,410, cost 350 (here 150 fixed + 0.02 per email).
    fig = {"sent": 10_000, "bounced": 200, "delivered": 9_800, "sent_email": 10_000,
           "opens_unique": 2_450, "opens_human": 2_450, "clicks_unique": 392,
           "clicks_human": 392, "unsubscribes": 0, "conversions": 49, "converters": 49,
           "revenue": 4_410.0}
    out = derive(fig, {"fixed": 150, "per_email": 0.02}, 150.0)
    assert out["cost"] == 350.0
    assert (out["open_rate"], out["ctr"], out["ctor"]) == (0.25, 0.04, 0.16)
    assert (out["roi"], out["roas"], out["cpa"]) == (11.6, 12.6, 7.142857)


def test_spring_totals_exact(spring: Engine) -> None:
    r = campaign_report(spring, "spring")
    assert {k: r[k] for k in ("audience", "sent", "delivered", "bounced", "failed",
                              "unknown")} == {"audience": 400, "sent": 388, "delivered": 380,
                                              "bounced": 8, "failed": 10, "unknown": 2}
    assert (r["opens_total"], r["opens_unique"], r["opens_human"]) == (145, 130, 100)
    assert (r["clicks_total"], r["clicks_unique"], r["clicks_human"]) == (40, 37, 30)
    assert (r["unsubscribes"], r["complaints"]) == (3, 1)
    assert (r["conversions"], r["converters"], r["revenue"]) == (20, 19, 990.0)
    assert r["cost"] == 119.4  # 100 + 0.05 × 388 sent (bounced ones were paid for)
    assert r["roi"] == round((990 - 119.4) / 119.4, 6) == 7.291457
    assert r["roas"] == 8.291457 and r["cpa"] == 5.97
    assert r["open_rate"] == round(130 / 380, 6) and r["human_open_rate"] == round(100 / 380, 6)
    assert r["ctr"] == round(37 / 380, 6) and r["ctor"] == round(37 / 130, 6)
    assert r["currency"] == "EUR"
    assert r["window"] == {"within_seconds": 5 * 86400, "basis": "click_or_delivery"}


def test_spring_variants_split_the_totals(spring: Engine) -> None:
    r = campaign_report(spring, "spring")
    a, b = r["variants"]
    assert (a["variant"], b["variant"]) == ("a", "b")
    assert (a["sent"], a["delivered"], b["sent"], b["delivered"]) == (194, 190, 194, 190)
    assert (a["opens_human"], b["opens_human"]) == (60, 40)
    assert (a["clicks_human"], b["clicks_human"]) == (20, 10)  # 207's second click: same message
    assert (a["conversions"], a["converters"], a["revenue"]) == (13, 12, 555.0)
    assert (b["conversions"], b["converters"], b["revenue"]) == (7, 7, 435.0)
    # The fixed cost is shared by messages sent: 50 each, plus 0.05 × 194.
    assert a["cost"] == b["cost"] == 59.7
    assert a["cost"] + b["cost"] == pytest.approx(r["cost"])
    assert a["click_ci"] == list(wilson_interval(20, 190))
    assert a["conversion_rate"] == 12 / 190
    low, high = a["revenue_per_recipient_ci"]
    assert low < 555 / 190 < high


def test_machine_engagement_is_in_totals_not_in_human_counts(spring: Engine) -> None:
    r = campaign_report(spring, "spring")
    assert r["opens_unique"] - r["opens_human"] == 30  # 61–80 and 241–250: machine only
    assert r["clicks_unique"] - r["clicks_human"] == 7


def test_decision_and_holdout_are_reported(spring: Engine) -> None:
    r = campaign_report(spring, "spring")
    d = r["decision"]
    assert d["test_key"] == "campaign:spring" and d["winner"] == "a"
    assert d["outcome"] == d["stats"]["outcome"]
    assert d["sentence"] == d["stats"]["reason"] and "a" in d["sentence"]
    h = r["holdout"]
    assert (h["holdout_contacts"], h["holdout_converters"]) == (20, 2)
    assert (h["treated_contacts"], h["treated_converters"]) == (400, 21)
    assert h["treated_revenue"] == 1120.0 and h["holdout_revenue"] == 80.0
    assert h["lift"] == pytest.approx(21 / 400 - 2 / 20)
    assert h["lift_ci_low"] < h["lift"] < h["lift_ci_high"]
    assert 0 < h["p_value"] <= 1


def test_the_later_message_of_another_campaign_takes_the_credit(spring: Engine) -> None:
    other = campaign_report(spring, "other")
    assert (other["conversions"], other["revenue"], other["sent"]) == (1, 60.0, 2)
    assert other["variants"] == [] and other["decision"] is None and other["holdout"] is None
