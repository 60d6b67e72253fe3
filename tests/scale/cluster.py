"""A real Prefect server and process workers on loopback, each in its own process group.

Everything here is started with ``start_new_session=True`` so that stopping (or SIGKILLing,
to simulate a lost machine) a worker also stops the flow-run processes it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.channels.servers import free_port

BIN = Path(sys.executable).parent


def _killpg(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
    if proc.poll() is None:
        _killpg(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    _killpg(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


class Cluster:
    """``prefect server start`` with its own PREFECT_HOME (SQLite), plus workers on demand."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.workers: list[subprocess.Popen] = []
        self.server: subprocess.Popen | None = None
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_LOGGING_TO_API_ENABLED": "false",
            # Tests trigger runs themselves; the every-minute tick must not compete. The other
            # background services only add writes to the server's SQLite file (2 cores).
            **{f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in (
                "SCHEDULER", "EVENT_PERSISTER", "TRIGGERS", "FOREMAN", "LATE_RUNS",
                "PAUSE_EXPIRATIONS", "REPOSSESSOR", "CANCELLATION_CLEANUP", "CLEANUP_RECONCILER",
                "TASK_RUN_RECORDER")},
            "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        }

    def start(self, timeout: float = 90.0) -> None:
        log = open(self.home / "server.log", "wb")  # noqa: SIM115 (lives as long as the server)
        self.server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
             "--port", str(self.port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError((self.home / "server.log").read_text()[-3000:])
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("Prefect server did not answer /api/health in time")

    def worker(self, pool: str, env: dict[str, str], *, limit: int = 2,
               name: str | None = None) -> subprocess.Popen:
        """Start ``prefect worker start --pool POOL`` in its own process group."""
        n = len(self.workers)
        log = open(self.home / f"worker{n}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process",
             "--limit", str(limit), "--name", name or f"worker-{n}"],
            env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.workers.append(proc)
        return proc

    def run(self, *args: str, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        """Run a CLI (``prefect ...`` or ``reach ...``) against this server."""
        return subprocess.run([str(BIN / args[0]), *args[1:]], env={**self.env, **(env or {})},
                              cwd=cwd, capture_output=True, text=True, timeout=180)

    def close(self) -> None:
        for proc in self.workers:
            stop(proc)
        if self.server is not None:
            stop(self.server)
