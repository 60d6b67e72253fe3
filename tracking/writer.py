"""Writing batches in a child process, so the server's process keeps its core for requests.

Profiled under load (py-spy, one worker, PostgreSQL), the flusher thread held the GIL for
an eighth of the server's samples, and a worker is bound by that one core: every batch
written in-process was requests not answered. :class:`ProcessStore` has the interface of
:class:`~tracking.store.EngagementStore` that :class:`~tracking.queue.EventQueue` uses
(``write_batch``, ``written``, ``orphans``) and runs the same ``write_batch`` in a child
process with its own engine, on the machine's other core. What crosses the pipe is the
batch of plain tuples (pickled in microseconds) one way and the counts the other.

Nothing is lost on the way: ``write_batch`` returns only once the child has committed,
and raises if the child failed or died, so the queue keeps the batch and retries it (a dead
child is replaced on the next call). A child killed in the instant between its commit and
its reply has that batch written twice: at least once, never lost.

The child ignores SIGINT and SIGTERM: a Ctrl-C or a process-group SIGTERM reaches the
server too, whose graceful shutdown still needs the child to flush the queue; it exits when
the server closes the pool or goes away.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from sqlalchemy import Engine

from tracking.store import EngagementStore, Op

# The child's store, one per child process (set by _init).
_store: EngagementStore | None = None


def _init(url: str) -> None:
    global _store
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Below the server's priority: when cores are short, answering requests comes first and
    # batches wait (the queue is made for that); a child on equal terms took the server's
    # core in turns and its p99 went from ~20 to ~60 ms.
    os.nice(10)
    from reach.db.engine import make_engine

    _store = EngagementStore(make_engine(url))  # the server migrated it already


def _write(ops: Sequence[Op]) -> tuple[dict[str, int], int]:
    """In the child: write one batch; the counts it added (by kind) and its orphans."""
    assert _store is not None
    before, orphans = Counter(_store.written), _store.orphans
    _store.write_batch(ops)
    return dict(_store.written - before), _store.orphans - orphans


def can_use(engine: Engine) -> bool:
    """A child can open its own connection to a database server, not to SQLite's memory."""
    return engine.dialect.name != "sqlite"


class ProcessStore:
    """:meth:`write_batch` in a child process; counts kept here for ``/metrics``."""

    def __init__(self, engine: Engine) -> None:
        self.url = engine.url.render_as_string(hide_password=False)
        self.written: Counter[str] = Counter()
        self.orphans = 0
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()  # replay and flush threads may both start the pool

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn, not fork: the server has an event loop and threads running.
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init, initargs=(self.url,))
            return self._pool

    def start(self) -> None:
        """Start the child now (at server start-up) rather than at the first flush."""
        self._executor().submit(int).result()

    def write_batch(self, ops: Sequence[Op]) -> int:
        """Write one batch in the child (blocks this thread until it committed)."""
        pool = self._executor()
        try:
            return self._count(*pool.submit(_write, list(ops)).result())
        except BrokenProcessPool:
            self._forget(pool)
            raise

    async def write_batch_async(self, ops: Sequence[Op]) -> int:
        """:meth:`write_batch` awaited from the event loop: no thread of this process
        waits on the child (one hop fewer per batch than a worker thread)."""
        pool = self._executor()
        try:
            return self._count(*await asyncio.wrap_future(pool.submit(_write, list(ops))))
        except BrokenProcessPool:
            self._forget(pool)
            raise

    def _count(self, written: dict[str, int], orphans: int) -> int:
        self.written.update(written)
        self.orphans += orphans
        return sum(written.values())

    def _forget(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:  # the child died: the next call starts a new one
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
