"""A campaign's worth of real ledger, engagement, event and decision rows, written with Core.

Campaign ``spring`` (email, variants a and b, goal purchase within 5d, revenue ``amount``,
cost fixed 100 + 0.05 per email, holdout 5 %) is sent at T0 to contacts 1–400: 1–200 get
a, 201–400 get b. Every figure the tests assert is derived by hand in the comments below.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from reach.db.schema import (
    ab_assignments,
    ab_decisions,
    contacts,
    definitions,
    engagements,
    events,
    messages,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)

SPRING_PLAN: dict[str, Any] = {
    "name": "spring", "version": "v1", "channel": "email",
    "ab_test": {"variants": [{"id": "a"}, {"id": "b"}], "metric": "clicked"},
    "holdout": 0.05,
    "goal": {"event": "purchase", "within": "5d", "revenue": "amount"},
    "cost": {"fixed": 100, "per_email": 0.05, "per_sms": 0, "currency": "EUR"},
}
OTHER_PLAN: dict[str, Any] = {
    "name": "other", "version": "v1", "channel": "email", "ab_test": None, "holdout": 0,
    "goal": {"event": "purchase", "within": "5d", "revenue": "amount"},
    "cost": {"fixed": 10, "per_email": 0, "per_sms": 0, "currency": "EUR"},
}


class Seeder:
    """Collects rows and writes them in one transaction."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.engagements: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.msg_of: dict[tuple[str, int], int] = {}

    def message(self, source: str, contact: int, status: str = "sent", *,
                variant: str | None = None, sent_at: datetime | None = T0,
                kind: str = "campaign", step: str | None = None) -> int:
        mid = len(self.messages) + 1
        self.messages.append({
            "id": mid, "idempotency_key": f"{kind}:{source}:{step}:{contact}:{mid}",
            "source_kind": kind, "source_name": source, "source_version": "v1",
            "step_id": step, "variant": variant, "contact_id": contact, "channel": "email",
            "status": status, "attempts": 1, "created_at": T0 - H,
            "sent_at": sent_at if status in ("sent", "bounced") else None,
        })
        self.msg_of[(f"{source}:{step}" if step else source, contact)] = mid
        return mid

    def engage(self, source: str, contact: int, kind: str, at: datetime,
               machine: bool = False) -> None:
        self.engagements.append({"message_id": self.msg_of[(source, contact)],
                                 "contact_id": contact, "kind": kind, "occurred_at": at,
                                 "machine": machine})

    def event(self, contact: int, at: datetime, amount: Any = None,
              type_: str = "purchase") -> None:
        props = {} if amount is None else {"amount": amount}
        self.events.append({"contact_id": contact, "type": type_, "occurred_at": at,
                            "properties": props, "received_at": at})

    def write(self, engine: Engine, n_contacts: int) -> None:
        with engine.begin() as conn:
            conn.execute(insert(contacts), [
                {"id": i, "email": f"c{i}@example.test", "attributes": {},
                 "email_status": "subscribed", "sms_status": "subscribed",
                 "created_at": T0 - D, "updated_at": T0 - D} for i in range(1, n_contacts + 1)])
            conn.execute(insert(messages), self.messages)
            if self.engagements:
                conn.execute(insert(engagements), self.engagements)
            if self.events:
                conn.execute(insert(events), self.events)


def define(engine: Engine, kind: str, plan: dict[str, Any]) -> None:
    """Store a plan as ``campaigns.run.record_definition`` does."""
    with engine.begin() as conn:
        conn.execute(insert(definitions).values(kind=kind, name=plan["name"],
                                                version=plan.get("version", "v1"), plan=plan,
                                                created_at=T0 - D))


def seed_spring(engine: Engine) -> Seeder:
    s = Seeder()
    for c in range(1, 401):
        variant = "a" if c <= 200 else "b"
        local = c if c <= 200 else c - 200
        # failed 191–195, unknown 196, bounced 181–184 (and the same in b): sent = 388,
        # bounced 8, delivered 380, failed 10, unknown 2, audience 400.
        status = ("failed" if 191 <= local <= 195 else "unknown" if local == 196
                  else "bounced" if 181 <= local <= 184 else "sent")
        s.message("spring", c, status, variant=variant)
    # Opens. a: human 1–60 (1–10 twice), machine-only 61–80, machine too on 1–5.
    # b: human 201–240, machine-only 241–250.
    # unique 80 + 50 = 130; human 60 + 40 = 100; total 60+10+20+5 + 40+10 = 145.
    for c in range(1, 61):
        s.engage("spring", c, "open", T0 + H)
    for c in range(1, 11):
        s.engage("spring", c, "open", T0 + 3 * H)
    for c in [*range(61, 81), *range(1, 6), *range(241, 251)]:
        s.engage("spring", c, "open", T0 + timedelta(minutes=1), machine=True)
    for c in range(201, 241):
        s.engage("spring", c, "open", T0 + H)
    # Clicks. human a 1–20 (1 twice), b 201–210; machine a 21–25, b 211–212.
    # unique 25 + 12 = 37; human 30; total 30 + 1 (1 again) + 1 (207 again) + 8 machine = 40.
    for c in [*range(1, 21), *range(201, 211)]:
        s.engage("spring", c, "click", T0 + 2 * H)
    s.engage("spring", 1, "click", T0 + 5 * H)
    for c in [*range(21, 26), *range(211, 213)]:
        s.engage("spring", c, "click", T0 + timedelta(minutes=1), machine=True)
    s.engage("spring", 22, "click", T0 + 4 * D, machine=True)  # a scanner renews nothing
    for c in (30, 230, 231):
        s.engage("spring", c, "unsubscribe", T0 + 4 * H)
    s.engage("spring", 232, "complaint", T0 + 4 * H)
    # Another campaign reaches 206 and 207 a day later; 207 clicks spring again after it.
    for c in (206, 207):
        s.message("other", c, sent_at=T0 + D)
    s.engage("spring", 207, "click", T0 + D + 2 * H)
    s.message("proof", 208, kind="test", sent_at=T0 + D)  # test sends are not touches
    # Purchases. Credited to spring: a 1–10 (50 each) + 2 again (25) + 12 ("oops": counted,
    # no revenue) + 100 by delivery (30) = 13 conversions, 12 converters, 555;
    # b 201–205 (80 each) + 207 (20) + 208 (15) = 7, 7, 435. Total 20, 19, 990.
    for c in range(1, 11):
        s.event(c, T0 + D, 50)
    s.event(2, T0 + 2 * D, 25)
    s.event(12, T0 + 4 * D, "oops")
    s.event(100, T0 + 3 * D, 30)
    for c in range(201, 206):
        s.event(c, T0 + 2 * D, 80)
    s.event(207, T0 + 2 * D, 20)
    s.event(208, T0 + 2 * D, 15)
    # Not credited to spring: 11 (6 d after its click), 101 (5 d 1 h after delivery),
    # 102 (before the send), 181 (bounced), 22 (only a machine click at 4 d; 6 d after
    # delivery), 206 (the later "other" message takes it: other gets 1 conversion, 60).
    s.event(11, T0 + 6 * D, 70)
    s.event(101, T0 + 5 * D + H, 70)
    s.event(102, T0 - H, 70)
    s.event(181, T0 + D, 70)
    s.event(22, T0 + 6 * D, 70)
    s.event(206, T0 + 2 * D, 60)
    s.event(3, T0 + D, 999, type_="page_view")
    # Holdout 401–420 (no messages): 401 and 402 buy in the window, 403 after it.
    for c in (401, 402):
        s.event(c, T0 + D, 40)
    s.event(403, T0 + 6 * D, 40)
    s.write(engine, 420)
    with engine.begin() as conn:
        conn.execute(insert(ab_assignments), [
            {"test_key": "campaign:spring", "contact_id": c, "variant": "holdout",
             "phase": "holdout", "assigned_at": T0} for c in range(401, 421)])
    define(engine, "campaign", SPRING_PLAN)
    define(engine, "campaign", OTHER_PLAN)
    return s


def store_decision(engine: Engine, test_key: str) -> dict[str, Any]:
    """Decide spring's test with ``reports.decide`` on its human click counts and store it."""
    from reports.decide import ArmResult, decide

    decision = decide([ArmResult("a", 190, clicked=20), ArmResult("b", 190, clicked=10)],
                      metric="clicked", confidence=0.95, fallback="send_best")
    with engine.begin() as conn:
        conn.execute(insert(ab_decisions).values(
            test_key=test_key, decided_at=T0 + 4 * H, winner=decision.winner,
            outcome=decision.outcome, stats=decision.to_dict()))
    return decision.to_dict()


@pytest.fixture
def spring(engine: Engine) -> Iterator[Engine]:
    """The engine with the spring campaign's rows and its stored A/B decision."""
    seed_spring(engine)
    store_decision(engine, "campaign:spring")
    yield engine


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path
