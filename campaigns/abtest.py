"""A/B tests of campaigns: the test phase, the decision, and the send to the rest.

Run 1 (``reach run``): a ``test_fraction`` of the audience is assigned a variant by hash
(deterministic per contact and test, weights honoured) and sent. After ``decide_after``,
the next ``reach tick`` or ``reach run`` measures each variant's human engagement, lets
``reports.decide`` judge it, stores the decision, and enqueues everybody else with the
winner (``send_winner``) or the split the decision allows. A holdout share is recorded and
never sent, so the report can measure the campaign's incremental lift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Engine, and_, select

from campaigns import ledger
from campaigns.plan import CampaignPlan
from reach import clock
from reach.clock import as_utc, parse_duration
from reach.db.schema import (
    ab_assignments,
    ab_decisions,
    campaign_state,
    contacts,
    messages,
)
from reach.settings import Settings
from reports.assign import assign_variant, in_holdout, in_test_fraction

PAGE = 5000


def test_key(plan: CampaignPlan) -> str:
    return f"campaign:{plan.name}"


def audience_ids(engine: Engine, where: Any) -> Iterator[list[int]]:
    """Audience contact ids in keyset pages (ids only: cheap even for millions)."""
    after = 0
    while True:
        with engine.connect() as conn:
            ids = [r[0] for r in conn.execute(
                select(contacts.c.id).where(where, contacts.c.id > after)
                .order_by(contacts.c.id).limit(PAGE))]
        if not ids:
            return
        yield ids
        after = ids[-1]


def _insert_ignore(conn: Any, table: Any, rows: list[dict[str, Any]], key: list[str]) -> None:
    if rows:
        conn.execute(ledger.dialect_insert(conn)(table)
                     .on_conflict_do_nothing(index_elements=key), rows)


def enqueue_with(settings: Settings, engine: Engine, plan: CampaignPlan, occ: str,
                 choose: Callable[[int], tuple[str | None, str]],
                 key: str | None = None) -> int:
    """Enqueue audience members one page at a time; ``choose(id)`` → (variant, phase).

    A ``None`` variant means "not now" (the rest while a test runs, or the holdout).
    Assignments are recorded so reports can compare arms and the holdout.
    """
    from campaigns.run import audience_where, key_prefix

    where = audience_where(plan)
    prefix = key_prefix(plan, occ)
    total, now, key = 0, clock.now(), key or test_key(plan)
    for ids in audience_ids(engine, where):
        rows, assignments = [], []
        for cid in ids:
            variant, phase = choose(cid)
            if phase in ("test", "holdout", "rest", "bandit"):
                assignments.append({"test_key": key, "contact_id": cid, "phase": phase,
                                    "variant": variant or "holdout", "assigned_at": now})
            if variant is not None:
                rows.append({"idempotency_key": f"{prefix}{cid}", "source_kind": "campaign",
                             "source_name": plan.name, "source_version": plan.version,
                             "contact_id": cid, "channel": plan.channel, "variant": variant})
        with engine.begin() as conn:
            _insert_ignore(conn, ab_assignments, assignments, ["test_key", "contact_id"])
            if rows:
                address = contacts.c.email if plan.channel == "email" else contacts.c.phone
                found = dict(conn.execute(select(contacts.c.id, address)
                                          .where(contacts.c.id.in_([r["contact_id"]
                                                                    for r in rows]))).all())
                for row in rows:
                    row["to_address"] = found.get(row["contact_id"])
                total += len(ledger.enqueue_rows(conn, rows))
    return total


def enqueue_plain_with_holdout(settings: Settings, engine: Engine, plan: CampaignPlan,
                               occ: str) -> int:
    key = test_key(plan)
    only = plan.variants[0].id

    def choose(cid: int) -> tuple[str | None, str]:
        if in_holdout(key, cid, plan.holdout):
            return None, "holdout"
        return only, "none"

    return enqueue_with(settings, engine, plan, occ, choose)


def stored_decision(engine: Engine, plan: CampaignPlan) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(ab_decisions).where(ab_decisions.c.test_key == test_key(plan))
                           ).mappings().first()
    return dict(row) if row else None


def arm_results(engine: Engine, plan: CampaignPlan) -> list[Any]:
    """Each variant's recipients and their human engagement, for the decision."""
    from reports.abmetrics import arm_results as measure

    where = and_(messages.c.source_kind == "campaign", messages.c.source_name == plan.name)
    variant_ids = [v["id"] for v in (plan.ab_test or {}).get("variants", [])]
    return measure(engine, where, variant_ids, plan.goal)


def decide_now(engine: Engine, plan: CampaignPlan) -> dict[str, Any]:
    """Judge the test, store the decision with its statistics, and return it."""
    from reports.decide import decide

    ab = plan.ab_test or {}
    arms = arm_results(engine, plan)
    decision = decide(arms, metric=ab.get("metric", "clicked"),
                      confidence=float(ab.get("confidence", 0.95)),
                      fallback=ab.get("fallback", "send_control"),
                      control_id=arms[0].id, min_per_arm=int(ab.get("min_per_variant", 100)),
                      at_deadline=True)
    data = decision.to_dict()
    row = {"test_key": test_key(plan), "decided_at": clock.now(), "winner": decision.winner,
           "outcome": decision.outcome, "stats": data}
    with engine.begin() as conn:
        _insert_ignore(conn, ab_decisions, [row], ["test_key"])
    return stored_decision(engine, plan) or row


def decide_due(engine: Engine, plan: CampaignPlan) -> bool:
    """Whether ``decide_after`` has passed since the test phase started."""
    with engine.connect() as conn:
        started = conn.execute(select(campaign_state.c.started_at)
                               .where(campaign_state.c.name == plan.name)).scalar()
    if started is None:
        return False
    after = parse_duration((plan.ab_test or {}).get("decide_after", "4h"))
    return clock.now() >= as_utc(started) + after


def enqueue_bandit(settings: Settings, engine: Engine, plan: CampaignPlan,
                   occ: str) -> tuple[int, dict[str, Any]]:
    """A recurring campaign's multi-armed bandit: this sending's whole audience is split by
    Thompson sampling on what the earlier sendings achieved (equal shares the first time).
    The shares are stored with the arms they came from, under ``campaign:NAME:OCCURRENCE``."""
    from reports.decide import thompson_allocation

    ab = plan.ab_test or {}
    key = f"{test_key(plan)}:{occ}"
    decision = _stored(engine, key)
    if decision is None:
        arms = arm_results(engine, plan)
        # Seeded by the sending, so a re-run of the same sending draws the same shares.
        seed = int.from_bytes(key.encode()[-8:].rjust(8, b"\0"), "big")
        shares = thompson_allocation(arms, ab.get("metric", "clicked"), rng=seed)
        row = {"test_key": key, "decided_at": clock.now(), "winner": None,
               "outcome": "bandit", "stats": {"shares": shares, "model": "Thompson sampling,"
                                              " Beta(1,1) priors",
                                              "arms": [a.__dict__ for a in arms]}}
        with engine.begin() as conn:
            _insert_ignore(conn, ab_decisions, [row], ["test_key"])
        decision = _stored(engine, key) or row
    shares = decision["stats"]["shares"]
    weights = [(vid, share) for vid, share in shares.items() if share > 0]

    def choose(cid: int) -> tuple[str | None, str]:
        if in_holdout(test_key(plan), cid, plan.holdout):
            return None, "holdout"
        return assign_variant(key, cid, weights), "bandit"

    n = enqueue_with(settings, engine, plan, occ, choose, key=key)
    listing = ", ".join(f"{vid} {share:.0%}" for vid, share in shares.items())
    return n, {"phase": "bandit", "rest_enqueued": True, "shares": shares,
               "summary": f"bandit: {n} enqueued, shares {listing}"}


def _stored(engine: Engine, key: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(ab_decisions).where(ab_decisions.c.test_key == key)
                           ).mappings().first()
    return dict(row) if row else None


def enqueue_ab(settings: Settings, engine: Engine, plan: CampaignPlan,
               occ: str) -> tuple[int, dict[str, Any]]:
    """Enqueue what an A/B campaign should send now: the test phase, or the rest."""
    ab = plan.ab_test or {}
    if ab.get("strategy") == "bandit":
        return enqueue_bandit(settings, engine, plan, occ)
    key = test_key(plan)
    weights = [(v["id"], float(v.get("weight", 1.0))) for v in ab["variants"]]
    fraction = float(ab.get("test_fraction", 0.2))
    decision = stored_decision(engine, plan)
    if decision is None and decide_due(engine, plan):
        decision = decide_now(engine, plan)

    if decision is None:
        def choose_test(cid: int) -> tuple[str | None, str]:
            if in_holdout(key, cid, plan.holdout):
                return None, "holdout"
            if fraction >= 1 or in_test_fraction(key, cid, fraction):
                return assign_variant(key, cid, weights), "test"
            return None, "waiting"

        n = enqueue_with(settings, engine, plan, occ, choose_test)
        return n, {"phase": "test", "rest_enqueued": fraction >= 1,
                   "summary": f"test phase: {n} enqueued; the decision comes after "
                              f"{ab.get('decide_after')} on the next `reach tick`"}

    stats = decision.get("stats") or {}
    split = list(stats.get("split") or ([decision["winner"]] if decision.get("winner") else []))
    if ab.get("then") == "keep_split" or not split:
        split = split or [w[0] for w in weights]
    rest_weights = [(vid, w) for vid, w in weights if vid in split] or weights

    def choose_rest(cid: int) -> tuple[str | None, str]:
        if in_holdout(key, cid, plan.holdout):
            return None, "holdout"
        if fraction >= 1 or in_test_fraction(key, cid, fraction):
            # Test-phase members keep their variant (their ledger row already exists).
            return assign_variant(key, cid, weights), "test"
        return assign_variant(key + ":rest", cid, rest_weights), "rest"

    n = enqueue_with(settings, engine, plan, occ, choose_rest)
    reason = stats.get("reason") or decision.get("outcome")
    return n, {"phase": "rest", "rest_enqueued": True, "winner": decision.get("winner"),
               "outcome": decision.get("outcome"),
               "summary": f"decided: {reason}; {n} more enqueued with {', '.join(split)}"}


