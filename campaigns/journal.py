"""The in-flight journal: what a sender on this machine did with the rows it claimed.

The ledger marks a chunk of rows ``sending`` when it claims them and ``sent`` once the whole
chunk is through, so a ``kill -9`` leaves up to a chunk in ``sending`` with no way to tell,
from the database alone, which of them left. This journal narrows that to the messages
actually on the wire at the moment of the crash: per message, one small append-only write
before its bytes leave (``a``) and one after the provider accepted it (``s``) or definitely
refused it (``n``). After a crash the next run on this machine reads the dead sender's
journal: ``s`` rows are sent, rows that never left (no ``a``, or ``n``) go back to the
queue, and only ``a``-without-outcome rows are reported ``unknown``.

Why a file and not the database: two syscalls (~2 µs) per message instead of a commit per
message. A ``kill -9`` cannot lose a completed ``write()`` (it sits in the page cache); only
an operating-system crash can, and that changes the boot id, which is recorded in the file
header: a journal from before a reboot is ignored and every in-flight row is ``unknown``.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path

ATTEMPT, SENT, NOT_SENT = "a", "s", "n"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:  # not Linux: no way to tell a reboot, so the journal is never trusted
        return ""


def _stem(owner: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", owner)


def journal_files(directory: Path, owner: str) -> list[Path]:
    """Every journal of ``owner``: one per sender call (threads of one process share an
    owner, so each call writes its own file)."""
    return sorted(directory.glob(f"{_stem(owner)}.*.log"))


class Journal:
    """The writer side, owned by one sender (one lease owner) at a time."""

    def __init__(self, directory: Path, owner: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{_stem(owner)}.{uuid.uuid4().hex[:12]}.log"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL,
                           0o600)
        self._dirty = False
        self._header = f"boot {boot_id()}\n".encode()
        os.write(self._fd, self._header)

    def attempt(self, ledger_id: int) -> None:
        """Written just before the message's bytes may leave for the provider."""
        self._dirty = True
        os.write(self._fd, b"a %d\n" % ledger_id)

    def outcome(self, ledger_id: int, delivered: bool) -> None:
        os.write(self._fd, b"s %d\n" % ledger_id if delivered else b"n %d\n" % ledger_id)

    def attempt_many(self, ledger_ids: list[int]) -> None:
        """A chunk handed over at once (the outbox): one write for all its attempts."""
        if ledger_ids:
            self._dirty = True
            os.write(self._fd, b"".join(b"a %d\n" % i for i in ledger_ids))

    def outcome_many(self, ledger_ids: list[int], delivered: bool) -> None:
        kind = b"s" if delivered else b"n"
        if ledger_ids:
            os.write(self._fd, b"".join(b"%s %d\n" % (kind, i) for i in ledger_ids))

    def settled(self) -> None:
        """The chunk's outcomes are committed to the ledger: start afresh."""
        if self._dirty:
            os.ftruncate(self._fd, 0)
            os.write(self._fd, self._header)
            self._dirty = False

    def close(self) -> None:
        """Close; the file stays only if rows it covers were never settled (an exception
        in the middle of a chunk), for the next run's recovery to read."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if not self._dirty:
                with contextlib.suppress(OSError):
                    self.path.unlink()


def read(directory: Path, owner: str) -> dict[int, str] | None:
    """The last record per ledger id in a dead owner's journals, or None when there is no
    trustworthy journal (none written, or written before the machine rebooted)."""
    current = boot_id()
    state: dict[int, str] = {}
    found = False
    for path in journal_files(directory, owner):
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return None
        if not lines or not current or lines[0] != f"boot {current}":
            return None
        found = True
        for line in lines[1:]:
            kind, _, number = line.partition(" ")
            # 's' is final; an attempt after an 'n' (a retry) is in flight again.
            if (kind in (ATTEMPT, SENT, NOT_SENT) and number.isdigit()
                    and state.get(int(number)) != SENT):
                state[int(number)] = kind
    return state if found else None


def discard(directory: Path, owner: str) -> None:
    for path in journal_files(directory, owner):
        with contextlib.suppress(OSError):
            path.unlink()
