"""Batches written by a child process (tracking.writer): the same rows, counts and
guarantees as in-process writes, including when the child dies mid-load."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime

import httpx
import pytest

from tests.tracking.conftest import count_engagements, rows, start_server, wait_for
from tracking.store import engagement_op
from tracking.writer import ProcessStore

HUMAN = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/126.0"


def _child_pids(store: ProcessStore) -> list[int]:
    pool = store._pool
    assert pool is not None, "the child should be running"
    return list(pool._processes)  # type: ignore[attr-defined]


def test_child_writes_the_same_rows_and_reports_counts(engine, seed) -> None:
    _, m = seed()
    store = ProcessStore(engine)
    try:
        store.start()
        assert _child_pids(store) and os.getpid() not in _child_pids(store)
        now = datetime.now(UTC)
        ops = [engagement_op(m, "open", now, user_agent="UA"),
               engagement_op(m, "click", now, url="https://shop.acme.test/a"),
               engagement_op(m + 10_000, "open", now)]  # no such message: an orphan
        assert store.write_batch(ops) == 2
        assert dict(store.written) == {"open": 1, "click": 1}
        assert store.orphans == 1
    finally:
        store.close()
    stored = rows(engine)
    assert [(r.kind, r.url, r.user_agent) for r in stored] == [
        ("open", None, "UA"), ("click", "https://shop.acme.test/a", None)]


def test_a_dead_child_fails_the_batch_and_the_next_call_starts_a_new_one(engine, seed) -> None:
    _, m = seed()
    store = ProcessStore(engine)
    try:
        store.start()
        (pid,) = _child_pids(store)
        os.kill(pid, signal.SIGKILL)
        ops = [engagement_op(m, "open", datetime.now(UTC))]
        with pytest.raises(BrokenProcessPool):
            store.write_batch(ops)
        assert count_engagements(engine) == 0
        assert store.write_batch(ops) == 1  # the queue's retry
        assert _child_pids(store) != [pid]
    finally:
        store.close()
    assert count_engagements(engine) == 1


def test_child_ignores_sigterm_so_the_server_can_still_flush(engine) -> None:
    store = ProcessStore(engine)
    try:
        store.start()
        (pid,) = _child_pids(store)
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
        assert store.write_batch([]) == 0
        assert _child_pids(store) == [pid]
    finally:
        store.close()


def test_server_loses_nothing_when_the_writer_child_is_killed_under_load(
    settings, engine, seed
) -> None:
    ids = [seed()[1] for _ in range(4)]
    server = start_server(settings, engine, writer="process",
                          queue_options={"batch_size": 50, "interval": 0.02})
    store = server.app.state.tracking.queue.store
    assert isinstance(store, ProcessStore)
    answered = []

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=10,
                          headers={"user-agent": HUMAN}) as client:
            for i in range(600):
                answered.append(client.get(server.pixel(ids[i % 4])).status_code)

    try:
        thread = threading.Thread(target=load)
        thread.start()
        assert wait_for(lambda: count_engagements(engine) > 0)
        for pid in _child_pids(store):
            os.kill(pid, signal.SIGKILL)
        thread.join(timeout=60)
        assert answered == [200] * 600
        assert wait_for(lambda: count_engagements(engine) >= 600, timeout=30)
        with httpx.Client(base_url=server.url) as client:
            # Each answered open is counted once, by the write that reported back.
            assert wait_for(lambda: 'events_written_total{kind="open"} 600\n'
                            in client.get("/metrics").text)
            metrics = client.get("/metrics").text
        assert "reach_tracking_flush_errors_total 0" not in metrics  # the dead child's batch
    finally:
        server.stop()
    # At least once: a child killed between its commit and its reply has its batch written
    # again by the retry (at most one batch of 50); never fewer than were answered.
    stored = count_engagements(engine)
    assert 600 <= stored <= 650
