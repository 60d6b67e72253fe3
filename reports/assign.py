"""Deterministic assignment of contacts to A/B variants, test groups and holdouts.

A contact's place is a pure function of (stream, test key, contact id): no state, no
randomness, the same on every run, worker and database, so a resumed or repeated send
assigns exactly as before (the assignment is still recorded with each message, because
the recorded value is what reports trust).

Each question hashes its own stream ("variant", "test", "holdout"), so the answers are
independent: being in the 20 % test group says nothing about which variant a contact gets,
nor about the holdout. Changing this scheme would reassign every running test.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

_SCALE = float(2**53)


def uniform(stream: str, test_key: str, contact_id: int) -> float:
    """A uniform number in [0, 1) from sha256 of stream, test key and contact id.

    The separator keeps key "a1" with id 2 apart from key "a" with id 12;
    the top 53 bits of the digest give every double in the range the same chance.
    """
    digest = hashlib.sha256(f"{stream}\x1f{test_key}\x1f{int(contact_id)}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / _SCALE


def _check_fraction(fraction: float, what: str) -> None:
    if not 0.0 <= fraction <= 1.0 or math.isnan(fraction):
        raise ValueError(f"{what} must be between 0 and 1, got {fraction}")


def assign_variant(test_key: str, contact_id: int, variants: Sequence[tuple[str, float]]) -> str:
    """The variant id of a contact in a test, chosen with probability proportional to weight.

    Weights need not sum to 1 (50/50 and 0.5/0.5 are the same); a weight of 0 is never
    chosen. The variants' order is part of the assignment: keep the YAML's order.
    """
    if not variants:
        raise ValueError("an A/B test needs at least one variant")
    ids = [variant_id for variant_id, _ in variants]
    if len(set(ids)) != len(ids):
        raise ValueError(f"variant ids must be unique, got {ids}")
    weights = [float(weight) for _, weight in variants]
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"variant weights must be >= 0 and not all 0, got {weights}")
    point = uniform("variant", test_key, contact_id) * sum(weights)
    cumulative = 0.0
    for variant_id, weight in zip(ids, weights, strict=True):
        cumulative += weight
        if point < cumulative:
            return variant_id
    # Rounding can leave the point a hair above the last cumulative sum: last positive weight.
    return next(v for v, w in zip(reversed(ids), reversed(weights), strict=True) if w > 0)


def in_test_fraction(test_key: str, contact_id: int, fraction: float) -> bool:
    """Whether a contact is in the test group (``test_fraction``) of a campaign's A/B test."""
    _check_fraction(fraction, "test_fraction")
    return uniform("test", test_key, contact_id) < fraction


def in_holdout(test_key: str, contact_id: int, fraction: float) -> bool:
    """Whether a contact is held out (gets nothing) to measure incremental lift.

    ``test_key`` here is the campaign's or journey's key; the stream is independent of the
    test-group and variant streams, so the holdout is a random slice of every other group.
    """
    _check_fraction(fraction, "holdout")
    return uniform("holdout", test_key, contact_id) < fraction
