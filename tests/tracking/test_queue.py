"""The write queue on the test database: batch sizes when it keeps pace and when behind."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from tests.tracking.conftest import count_engagements
from tracking.queue import EventQueue
from tracking.store import EngagementStore, Op, engagement_op


class _Recording(EngagementStore):
    """The real store, writing to the real database, that notes each batch's size; the
    first write waits until ``gate`` opens, as a slow database would."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.sizes: list[int] = []
        self.gate = asyncio.Event()

    async def write_batch_async(self, ops: Sequence[Op]) -> int:
        await self.gate.wait()
        self.sizes.append(len(ops))
        return await super().write_batch_async(ops)


def _run(engine: Engine, tmp_path: Path, seed, events: int, **options: int) -> list[int]:
    _, message_id = seed()
    at = datetime.now(UTC)

    async def main() -> list[int]:
        store = _Recording(engine)
        queue = EventQueue(store, tmp_path / "spool", batch_size=100, interval=0.01, **options)
        await queue.start()
        queue.put(engagement_op(message_id, "open", at))
        await asyncio.sleep(0.05)  # the flusher took that one and waits at the gate
        for _ in range(events - 1):
            queue.put(engagement_op(message_id, "open", at))
        store.gate.set()
        await queue.close()
        return store.sizes

    return asyncio.run(main())


def test_a_queue_behind_catches_up_in_bigger_batches(engine: Engine, tmp_path: Path,
                                                     seed) -> None:
    sizes = _run(engine, tmp_path, seed, 2_501, max_pending=100_000)
    # 2,500 waiting behind the first write: written 1,000 at a time (10 × batch_size).
    assert sizes == [1, 1_000, 1_000, 500]
    assert count_engagements(engine) == 2_501


def test_catch_up_batches_stay_within_a_tenth_of_the_memory_bound(
        engine: Engine, tmp_path: Path, seed) -> None:
    sizes = _run(engine, tmp_path, seed, 1_201, max_pending=3_000)
    assert sizes == [1, 300, 300, 300, 300]
    assert count_engagements(engine) == 1_201
