"""A token bucket shared by every coroutine of one messenger (``max_per_second``).

Implemented as GCRA (the "virtual scheduling" form of a token bucket): each caller reserves
the next free slot and sleeps until it. No lock is needed because reservations happen
synchronously inside one event loop, and callers are served in arrival order.
"""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """At most ``rate`` acquisitions per second on average, bursts of ``burst``."""

    def __init__(self, rate: float | None, burst: int = 1) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._interval = 1.0 / rate if rate else 0.0
        self._tolerance = self._interval * max(0, burst - 1)
        self._tat = 0.0  # theoretical arrival time of the next permitted call

    async def acquire(self) -> None:
        """Wait until one more call is allowed."""
        if not self.rate:
            return
        now = time.monotonic()
        tat = max(self._tat, now)
        wait = tat - self._tolerance - now
        self._tat = tat + self._interval
        if wait > 0:
            await asyncio.sleep(wait)
