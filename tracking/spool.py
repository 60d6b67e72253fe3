"""A local JSON-lines spool for queued operations the database cannot take right now.

Used when the in-memory queue is full (a long database outage at peak load) and at
shutdown when the database is still unreachable: the pixel keeps answering and nothing is
lost; the spool is replayed once the database answers again, by this process or the next.

Several worker processes may share one project folder, so each process appends to its own
file, under an exclusive ``flock``; a replayer claims a file by renaming it while holding
that lock, and a writer that finds its file renamed under it starts a new one. Replay is
at-least-once: a crash between a committed batch and the removal of its file replays that
batch again.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from tracking.store import Op

SPOOL_DIR_NAME = ".reach-spool"


class Spool:
    """The spool directory of one project; one file per writing process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._name = f"ops-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self.spooled = 0  # operations written to the spool by this process

    @property
    def path(self) -> Path:
        return self.directory / self._name

    def append(self, ops: list[Op]) -> None:
        """Append operations durably (fsync), so a crash after this loses nothing."""
        if not ops:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(op, separators=(",", ":")) + "\n" for op in ops).encode()
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if not same:  # claimed by a replayer while we waited for the lock
                    continue
                os.write(fd, data)
                os.fsync(fd)
                self.spooled += len(ops)
                return
            finally:
                os.close(fd)

    def pending_files(self) -> list[Path]:
        """Spool files waiting for replay, including ones left by crashed replayers."""
        if not self.directory.is_dir():
            return []
        files = sorted(self.directory.glob("ops-*.jsonl"))
        for stale in self.directory.glob("*.replay-*"):
            pid = stale.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                target = stale.with_name(stale.name.split(".replay-")[0] + ".jsonl")
                os.replace(stale, target)
                files.append(target)
        return files

    def claim(self, path: Path) -> Path | None:
        """Take a spool file for replay (rename under its lock); None if it is gone."""
        claimed = path.with_name(f"{path.stem}.replay-{os.getpid()}")
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_ino != os.stat(path).st_ino:
                    return None
            except FileNotFoundError:
                return None
            os.replace(path, claimed)
        finally:
            os.close(fd)
        if path == self.path:
            self._name = f"ops-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        return claimed

    @staticmethod
    def read(path: Path) -> Iterator[Op]:
        """The operations of a claimed file; a torn last line (crash mid-write) is skipped."""
        with path.open("rb") as handle:
            for line in handle:
                try:
                    yield tuple(json.loads(line))
                except ValueError:
                    continue

    def count(self) -> int:
        """Operations currently waiting in spool files (for /metrics)."""
        total = 0
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                try:
                    with path.open("rb") as handle:
                        total += sum(1 for _ in handle)
                except OSError:
                    continue
        return total


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
