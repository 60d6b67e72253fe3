"""The in-process write queue: routes enqueue, one background task flushes in batches.

A route only appends a tuple to a deque (no await, no lock: the event loop is the only
writer), so the pixel answers in microseconds whatever the database is doing. The flusher
takes up to ``batch_size`` operations every ``interval`` seconds, or as soon as a full
batch is waiting, and writes them in a worker thread (the engine is synchronous).

Failure handling, so that nothing answered with 200 is ever lost:

* a failed batch goes back to the front of the queue and is retried with a growing pause;
* past ``max_pending`` operations in memory, the oldest are moved to the local spool
  (:mod:`tracking.spool`), and spool files are replayed when the database answers again;
* :meth:`EventQueue.close` (the app's lifespan exit, i.e. uvicorn's graceful shutdown on
  SIGTERM, after in-flight requests have been answered) flushes everything, and spools
  what the database still refuses after ``shutdown_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import anyio.to_thread

from tracking.spool import Spool
from tracking.store import Op

log = logging.getLogger("reach.tracking")


class BatchStore(Protocol):
    """Where batches go: :class:`~tracking.store.EngagementStore` (in a thread of this
    process) or :class:`~tracking.writer.ProcessStore` (in a child process)."""

    written: Counter[str]
    orphans: int

    def start(self) -> None: ...
    def write_batch(self, ops: Sequence[Op]) -> int: ...
    async def write_batch_async(self, ops: Sequence[Op]) -> int: ...
    def close(self) -> None: ...


class EventQueue:
    """Batches operations to a :class:`BatchStore`, with retry and spool."""

    def __init__(
        self,
        store: BatchStore,
        spool_dir: Path,
        *,
        batch_size: int = 500,
        interval: float = 0.1,
        max_pending: int = 100_000,
        shutdown_timeout: float = 10.0,
        replay_every: float = 5.0,
        catch_up: int = 10,
    ) -> None:
        self.store = store
        self.spool = Spool(spool_dir)
        self.batch_size = batch_size
        self.interval = interval
        self.max_pending = max_pending
        self.shutdown_timeout = shutdown_timeout
        self.replay_every = replay_every
        self._largest = max(batch_size, min(batch_size * catch_up, max_pending // 10))
        self.flush_errors = 0
        self._pending: deque[Op] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._next_replay = 0.0

    @property
    def depth(self) -> int:
        """Operations waiting in memory."""
        return len(self._pending)

    def put(self, op: Op) -> None:
        """Queue one operation; never blocks, never fails."""
        self._pending.append(op)
        if len(self._pending) >= self.batch_size:
            self._wake.set()
            if len(self._pending) > self.max_pending:
                self._spill()

    def _spill(self) -> None:
        # Back-pressure: the oldest half goes to disk so memory stays bounded. A blocking
        # write, but a rare one, and it is what keeps the pixel answering during an outage.
        count = len(self._pending) // 2
        ops = [self._pending.popleft() for _ in range(count)]
        try:
            self.spool.append(ops)
        except OSError:
            log.exception("cannot spool %d tracking events; keeping them in memory", count)
            self._pending.extendleft(reversed(ops))

    async def start(self) -> None:
        """Start the store and the background flusher (from the app's lifespan)."""
        await anyio.to_thread.run_sync(self.store.start)
        self._task = asyncio.create_task(self._run(), name="reach-tracking-flusher")

    async def _run(self) -> None:
        pause = self.interval
        while not self._closing:
            if len(self._pending) < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=pause)
            self._wake.clear()
            if self._closing:
                break
            ok = await self._flush_once()
            if ok:
                pause = self.interval
                if time.monotonic() >= self._next_replay:
                    self._next_replay = time.monotonic() + self.replay_every
                    await self._replay()
            else:
                pause = min(pause * 2, 2.0)

    async def _flush_once(self) -> bool:
        """Write one batch; on failure put it back in front. Returns False on failure.

        A queue that fell behind is written in bigger batches (``catch_up`` times
        ``batch_size``, at most a tenth of ``max_pending``: a batch in flight is out of the
        queue, beyond the spill bound): batches go one at a time, each with its round
        trips and commit, and under a load the database could not follow at 500 per batch
        the backlog only grew (two workers on two cores: 52,000–72,000 events behind after
        20 s; with catch-up batches, none)."""
        if not self._pending:
            return True
        count = min(len(self._pending), self._largest)
        batch = [self._pending.popleft() for _ in range(count)]
        try:
            await self.store.write_batch_async(batch)
        except Exception as exc:  # driver errors vary; keep the events and retry
            self.flush_errors += 1
            log.warning("tracking flush failed (%s: %s); retrying", type(exc).__name__, exc)
            self._pending.extendleft(reversed(batch))
            return False
        return True

    async def _replay(self) -> None:
        """Replay spool files left by this or an earlier process, batch by batch."""
        if not self.spool.directory.is_dir():
            return
        await anyio.to_thread.run_sync(self._replay_sync)

    def _replay_sync(self) -> None:
        for path in self.spool.pending_files():
            claimed = self.spool.claim(path)
            if claimed is None:
                continue
            ops = list(Spool.read(claimed))
            done = 0
            try:
                while done < len(ops):
                    self.store.write_batch(ops[done:done + self.batch_size])
                    done += self.batch_size
            except Exception as exc:  # the database went away again: keep the rest
                self.flush_errors += 1
                log.warning("spool replay stopped (%s); will retry", type(exc).__name__)
                self.spool.append(ops[done:])
                claimed.unlink()
                return
            claimed.unlink()

    async def close(self) -> None:
        """Flush everything (graceful shutdown); spool what cannot be written in time."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        deadline = time.monotonic() + self.shutdown_timeout
        pause = 0.05
        while self._pending and time.monotonic() < deadline:
            if not await self._flush_once():
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
        if self._pending:
            ops = list(self._pending)
            self._pending.clear()
            log.warning("database unavailable at shutdown: %d events spooled", len(ops))
            await anyio.to_thread.run_sync(self.spool.append, ops)
        else:
            with contextlib.suppress(Exception):
                await self._replay()
        await anyio.to_thread.run_sync(self.store.close)
