"""The in-flight journal: what it records, and when it is not to be trusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaigns import journal
from campaigns.journal import Journal


def test_records_the_last_outcome_per_message(tmp_path: Path) -> None:
    j = Journal(tmp_path, "host:123:abc")
    j.attempt(1)
    j.outcome(1, delivered=True)
    j.attempt(2)  # on the wire
    j.attempt(3)
    j.outcome(3, delivered=False)  # refused outright: never delivered
    j.attempt(4)
    j.outcome(4, delivered=False)
    j.attempt(4)  # retried: in flight again
    assert journal.read(tmp_path, "host:123:abc") == {1: "s", 2: "a", 3: "n", 4: "a"}


def test_settled_chunks_are_forgotten_and_a_clean_close_leaves_nothing(tmp_path: Path) -> None:
    j = Journal(tmp_path, "host:1:x")
    j.attempt(1)
    j.outcome(1, delivered=True)
    j.settled()
    assert journal.read(tmp_path, "host:1:x") == {}
    j.close()
    assert journal.read(tmp_path, "host:1:x") is None
    assert list(tmp_path.iterdir()) == []


def test_an_unsettled_journal_survives_close_for_recovery(tmp_path: Path) -> None:
    j = Journal(tmp_path, "host:1:x")
    j.attempt(7)
    j.close()
    assert journal.read(tmp_path, "host:1:x") == {7: "a"}
    journal.discard(tmp_path, "host:1:x")
    assert journal.read(tmp_path, "host:1:x") is None


def test_threads_of_one_owner_write_separate_files_read_together(tmp_path: Path) -> None:
    a, b = Journal(tmp_path, "h:9:n"), Journal(tmp_path, "h:9:n")
    a.attempt(1)
    b.attempt(2)
    b.outcome(2, delivered=True)
    assert journal.read(tmp_path, "h:9:n") == {1: "a", 2: "s"}
    assert journal.read(tmp_path, "h:9:other") is None


def test_a_journal_from_before_a_reboot_is_ignored(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    j = Journal(tmp_path, "h:9:n")
    j.attempt(1)
    j.outcome(1, delivered=True)
    monkeypatch.setattr(journal, "boot_id", lambda: "another-boot")
    # The page cache may have lost writes: nothing in it may be believed.
    assert journal.read(tmp_path, "h:9:n") is None
