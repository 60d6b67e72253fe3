"""Nothing answered is lost: graceful shutdown, database outages, the spool, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event

from tests.tracking.conftest import SECRET, LiveServer, count_engagements, start_server, wait_for
from tracking.spool import SPOOL_DIR_NAME
from tracking.tokens import Signer

HUMAN = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/126.0"


class Outage:
    """Fault injection at the driver boundary: every statement fails while ``down``."""

    def __init__(self, engine) -> None:
        self.down = False
        self.engine = engine
        event.listen(engine, "before_cursor_execute", self._check)

    def _check(self, *args) -> None:
        if self.down:
            raise ConnectionError("database unavailable (injected)")

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._check)


def _fire(base_url: str, paths: list[str], concurrency: int = 16) -> list[int]:
    """GET every path with a few concurrent clients; the status of each answer."""

    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30,
                                     headers={"user-agent": HUMAN}) as client:
            gate = asyncio.Semaphore(concurrency)

            async def one(path: str) -> int:
                async with gate:
                    try:
                        return (await client.get(path)).status_code
                    except httpx.HTTPError:
                        return 0

            return await asyncio.gather(*(one(p) for p in paths))

    return asyncio.run(run())


def _paths(live_signer: Signer, message_ids: list[int], count: int) -> list[str]:
    paths = []
    for i in range(count):
        mid = message_ids[i % len(message_ids)]
        token = live_signer.message_token(mid)
        if i % 3:
            paths.append(f"/o/{token}.gif")
        else:
            paths.append(f"/c/{token}/{live_signer.url_token(f'https://shop.acme.test/{i % 5}')}")
    return paths


def test_graceful_shutdown_flushes_everything(settings, engine, seed) -> None:
    ids = [seed()[1] for _ in range(5)]
    # A flush interval far longer than the test: only the shutdown can write these.
    server = start_server(settings, engine,
                          queue_options={"interval": 600.0, "batch_size": 1_000_000})
    try:
        statuses = _fire(server.url, _paths(server.signer, ids, 600))
        assert count_engagements(engine) == 0
    finally:
        server.stop()
    answered = sum(1 for s in statuses if s in (200, 302))
    assert answered == 600
    assert count_engagements(engine) == answered


def test_pixel_answers_through_an_outage_and_catches_up(live: LiveServer, seed) -> None:
    _, m = seed()
    outage = Outage(live.engine)
    try:
        outage.down = True
        statuses = _fire(live.url, [live.pixel(m)] * 50)
        assert statuses == [200] * 50
        with live.client() as client:
            assert client.get("/health").status_code == 503
            wait_for(lambda: "flush_errors_total 0" not in client.get("/metrics").text)
            assert "reach_tracking_flush_errors_total 0" not in client.get("/metrics").text
        outage.down = False
        assert wait_for(lambda: count_engagements(live.engine) == 50)
    finally:
        outage.remove()


def test_full_queue_spools_to_disk_and_replays(settings, engine, seed) -> None:
    _, m = seed()
    outage = Outage(engine)
    server = start_server(settings, engine, queue_options={
        "max_pending": 20, "batch_size": 10, "interval": 0.05, "replay_every": 0.1})
    spool = Path(settings.project_dir) / SPOOL_DIR_NAME
    try:
        outage.down = True
        assert _fire(server.url, [server.pixel(m)] * 120, concurrency=4) == [200] * 120
        assert list(spool.glob("*.jsonl")), "the overflow should be on disk"
        outage.down = False
        assert wait_for(lambda: count_engagements(engine) == 120)
        assert wait_for(lambda: not list(spool.iterdir()))
    finally:
        outage.remove()
        server.stop()
    assert count_engagements(engine) == 120


def test_shutdown_during_outage_spools_and_next_start_replays(settings, engine, seed) -> None:
    _, m = seed()
    outage = Outage(engine)
    server = start_server(settings, engine, queue_options={"shutdown_timeout": 0.3})
    try:
        outage.down = True
        assert _fire(server.url, [server.pixel(m)] * 30) == [200] * 30
        server.stop()
    finally:
        outage.remove()
    spool = Path(settings.project_dir) / SPOOL_DIR_NAME
    assert sum(len(p.read_text().splitlines()) for p in spool.glob("*.jsonl")) == 30
    assert count_engagements(engine) == 0
    again = start_server(settings, engine)
    try:
        assert wait_for(lambda: count_engagements(engine) == 30)
    finally:
        again.stop()
    assert count_engagements(engine) == 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(("workers", "writer"),
                         [(1, "thread"), (1, "process"), (2, "process")])
def test_sigterm_under_load_loses_nothing(tmp_path: Path, db_url: str, engine, seed,
                                          workers: int, writer: str) -> None:
    ids = [seed()[1] for _ in range(5)]
    port = _free_port()
    env = {**os.environ, "REACH_DATABASE_URL": db_url, "REACH_SECRET_KEY": SECRET,
           "REACH_PROJECT_DIR": str(tmp_path), "REACH_TRACKING_WRITER": writer}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracking.server", "--project", str(tmp_path), "--port",
         str(port), "--workers", str(workers)],
        env=env, cwd=Path(__file__).resolve().parents[2],
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        statuses = _fire(base, _paths(Signer([SECRET]), ids, 900))
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after its graceful shutdown: -SIGTERM is a clean exit.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    answered = sum(1 for s in statuses if s in (200, 302))
    assert answered == 900
    assert count_engagements(engine) == answered
