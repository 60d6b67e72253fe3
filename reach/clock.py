"""The one clock of Reach.

``REACH_NOW`` (ISO 8601 with offset) replaces the current time everywhere so that tests and
simulations can walk a journey through days in seconds. A context override lets the
simulator run a virtual clock inside one process without touching the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

_override: ContextVar[datetime | None] = ContextVar("reach_now_override", default=None)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class ClockError(ValueError):
    """A time or duration string that cannot be understood."""


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 timestamp; a value without offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ClockError(f"not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def now() -> datetime:
    """The current time as an aware UTC datetime, honouring overrides and ``REACH_NOW``."""
    fixed = _override.get()
    if fixed is not None:
        return fixed
    env = os.environ.get("REACH_NOW")
    if env:
        return parse_instant(env)
    return datetime.now(UTC)


def overridden() -> datetime | None:
    """The instant a :func:`frozen` block fixed, if any (to hand on to helper processes,
    which do not share this context; ``REACH_NOW`` they inherit with the environment)."""
    return _override.get()


@contextmanager
def frozen(at: datetime) -> Iterator[None]:
    """Run a block with the clock fixed at ``at`` (used by the simulator and tests)."""
    token = _override.set(at.astimezone(UTC))
    try:
        yield
    finally:
        _override.reset(token)


def parse_duration(text: str | int | float) -> timedelta:
    """Parse ``30s``, ``15m``, ``4h``, ``2d`` or ``1w``; a bare number is seconds."""
    if isinstance(text, int | float):
        return timedelta(seconds=float(text))
    match = _DURATION.match(str(text))
    if not match:
        raise ClockError(f"not a duration: {text!r} (use a number and one of s m h d w, e.g. 2d)")
    amount, unit = match.groups()
    return timedelta(**{_UNITS[unit]: float(amount)})


def as_utc(value: datetime | None) -> datetime | None:
    """Normalise a datetime read from a database (SQLite drops the offset) to aware UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
