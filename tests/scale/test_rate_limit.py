"""Issue 8: a provider rate limit holds across all workers, measured at the SMTP server.

`reach deploy` turns the transport URL's ``max_per_second`` into the Prefect global rate
limit ``reach-email``; two process workers run the campaign's batch runs, and the SMTP
server's own receive times show that together they stayed under the rate.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.channels.servers import RecordingHandler, start_smtp
from tests.scale.cluster import Cluster, stop
from tests.scale.test_workers import CAMPAIGN, _children, _client, _ledger, _project, _wait_final

pytestmark = pytest.mark.slow
RATE = 20  # messages per second, for the whole fleet
# The limit is a token bucket of one second of the rate (ceil(RATE) slots, refilled at
# RATE/s) and no claim is larger than the bucket, so any window of w seconds may hold at most
# BURST + RATE × w messages by their slot times; LAG allows for the time between taking the
# slots and the message reaching the server (claim, render, SMTP), which shifts a window.
BURST = RATE
LAG = 1.0


class TimedHandler(RecordingHandler):
    """aiosmtpd handler that also notes when (monotonic) each message was accepted."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.times_lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        before = len(self.messages)
        reply = await super().handle_DATA(server, session, envelope)
        if len(self.messages) > before:
            with self.times_lock:
                self.times.append(time.monotonic())
        return reply


def max_in_window(times: list[float], window: float) -> int:
    """The most messages received within any ``window`` seconds (two-pointer sweep)."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] > window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_rate_limit_holds_across_two_workers(cluster: Cluster, tmp_path: Path,
                                             db_url: str) -> None:
    root, expected = _project(tmp_path, db_url, 320)
    assert len(expected) >= 280
    handler = TimedHandler()
    smtp = start_smtp(handler)
    workers = []
    try:
        transport = f"smtp://127.0.0.1:{smtp.port}?pool=2&max_per_second={RATE}"
        env = {"REACH_DATABASE_URL": db_url, "REACH_BATCH_SIZE": "50",
               "REACH_EMAIL_TRANSPORT": transport}
        # The real path: `reach deploy` creates the global rate limit from the transport URL.
        done = cluster.run("reach", "--project", str(root), "deploy", "--json", env=env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["rate_limits"] == {"reach-email": float(RATE)}

        workers = [cluster.worker("reach", env, name=f"rate-{i}") for i in range(2)]
        with _client(cluster) as client:
            deployment = client.read_deployment_by_name("campaign-run/campaign-run")
            parent = client.create_flow_run_from_deployment(deployment.id, parameters={
                "project_dir": str(root), "campaign": CAMPAIGN, "batch_runs": 6}).id
        assert _wait_final(cluster, parent, timeout=150) == "COMPLETED"
        children = _children(cluster, parent)
    finally:
        for proc in workers:
            stop(proc)
        smtp.stop()
        # The server is shared by the session's tests: later ones must not send under 20/s.
        with _client(cluster) as client:
            client.delete_global_concurrency_limit_by_name("reach-email")

    received = Counter(r for m in handler.messages for r in m.rcpt_tos)
    assert set(received) == expected
    assert max(received.values()) == 1  # nobody twice
    assert Counter(r["status"] for r in _ledger(db_url)) == {"sent": len(expected)}

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from campaigns.fanout import batch_reports

    with temporary_settings({PREFECT_API_URL: cluster.api_url}):
        reports = batch_reports([c.id for c in children])
    host = socket.gethostname()
    assert {r["worker"] for r in reports} == {f"{host}:{w.pid}" for w in workers}

    # The rate, from the SMTP server's clock: only upper bounds (Prefect's limiter undershoots).
    times = sorted(handler.times)
    assert len(times) == len(expected)
    peaks = {w: max_in_window(times, w) for w in (1.0, 5.0, 10.0)}
    duration = times[-1] - times[0]
    print(f"rate limit: {len(times)} messages in {duration:.1f}s, peaks "
          + ", ".join(f"{n} in {w:.0f}s ({n / w:.1f}/s)" for w, n in peaks.items()))
    for w, n in peaks.items():
        assert n <= BURST + RATE * (w + LAG), f"{n} messages within {w}s"
    assert duration >= len(times) / RATE * 0.8, f"{len(times)} messages in {duration:.1f}s"
