"""Draining a journey's due contacts with several processes at once.

A tick's per-contact work is Python under one GIL (Jinja, MIME, the driver) with database
waits in between, so one process uses about one core. On PostgreSQL the batch claim
(``FOR UPDATE SKIP LOCKED`` plus a lease) already lets several claimers share one journey
without ever taking the same contact, so a tick with many due contacts starts helper
processes that run the same batch loop beside it. Each helper has its own lease owner
(``host:pid:nonce``) and in-flight journal, so crash recovery treats it like any sender.

SQLite serialises writers, so there the tick stays in one process. Helpers are started
with ``spawn`` (never ``fork``: the parent holds database connections, threads and, under
Prefect, an event loop) and only when the backlog pays for their start-up (~1.5 s).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from multiprocessing import get_context
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select

from journeys import enrol as entry
from journeys.plan import JourneyPlan
from journeys.runtime import TickStats, js, run_batch
from reach import clock
from reach.settings import Settings

PER_HELPER = 2  # batches of backlog each helper must have to be worth starting


def tick_processes(settings: Settings, engine: Engine) -> int:
    """How many processes a tick may use: ``tick_processes``, 0 meaning one per core;
    always 1 on SQLite."""
    if engine.dialect.name != "postgresql":
        return 1
    wanted = settings.tick_processes or (os.cpu_count() or 1)
    return max(1, wanted)


def due_backlog(engine: Engine, plan: JourneyPlan, most: int) -> int:
    """Due, unleased contacts of the journey, counted up to ``most``."""
    now = clock.now()
    free = or_(js.c.lease_until.is_(None), js.c.lease_until < now)
    due = select(js.c.id).where(and_(js.c.journey == plan.name, js.c.status == entry.ACTIVE,
                                     js.c.due_at <= now, free)).limit(most).subquery()
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(due)).scalar_one())


def helpers_for(settings: Settings, engine: Engine, plan: JourneyPlan, batch_size: int,
                processes: int | None = None) -> int:
    """Helper processes worth starting now for this journey (0: drain in this process)."""
    if engine.dialect.name != "postgresql":
        return 0  # one writer at a time: helpers would only wait for the lock
    most = (processes or tick_processes(settings, engine)) - 1
    if most <= 0:
        return 0
    backlog = due_backlog(engine, plan, (most + 1) * PER_HELPER * batch_size)
    return min(most, backlog // (PER_HELPER * batch_size))


@contextlib.contextmanager
def helping(settings: Settings, engine: Engine, plan: JourneyPlan, *, batch_size: int,
            stats: TickStats, processes: int | None = None) -> Iterator[int]:
    """Helpers drain the journey while the block runs batches itself (directly, or as
    Prefect tasks); their stats are merged into ``stats`` when it ends. Yields how many
    helpers were started."""
    helpers = helpers_for(settings, engine, plan, batch_size, processes)
    if not helpers:
        yield 0
        return
    at = clock.overridden()  # a frozen clock (simulation, benchmark) holds in helpers too
    with ProcessPoolExecutor(helpers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_helper, settings, plan, batch_size, at)
                   for _ in range(helpers)]
        yield helpers
        for future in futures:
            stats.merge(TickStats(**future.result()))


def drain(settings: Settings, engine: Engine, plan: JourneyPlan, *, owner: str,
          batch_size: int, stats: TickStats, processes: int | None = None) -> None:
    """Run batches until no contact of the journey is due, with helpers when worth it."""
    with helping(settings, engine, plan, batch_size=batch_size, stats=stats,
                 processes=processes):
        while run_batch(settings, engine, plan, owner=owner, batch_size=batch_size,
                        stats=stats):
            pass


def _helper(settings: Settings, plan: JourneyPlan, batch_size: int,
            at: datetime | None) -> dict[str, Any]:
    """A helper process: the same batch loop, with its own engine and lease owner."""
    from campaigns.run import worker_id
    from reach.db.engine import connect

    engine = connect(settings.resolved_database_url)
    stats = TickStats(journey=plan.name, version=plan.version)
    owner = worker_id()
    try:
        with clock.frozen(at) if at is not None else contextlib.nullcontext():
            while run_batch(settings, engine, plan, owner=owner, batch_size=batch_size,
                            stats=stats):
                pass
    finally:
        engine.dispose()
    return stats.to_dict()
