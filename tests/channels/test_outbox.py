"""Outbox messengers: files a test (or the demo) can read back exactly."""

from __future__ import annotations

import json
from email import message_from_bytes
from pathlib import Path

import pytest

from campaigns.channels.base import OutgoingMessage, PermanentSendError, TransientSendError
from campaigns.channels.faulty import FaultyMessenger
from campaigns.channels.outbox import EmailOutbox, sms_segments
from campaigns.channels.registry import open_messenger
from reach.errors import ReachError
from reach.settings import Settings

RAW = b"From: a@acme.test\r\nTo: b@example.test\r\nSubject: Hi\r\n\r\nHello\r\n"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("REACH_NOW", "2025-03-01T09:00:00+00:00")
    return Settings(project_dir=tmp_path, secret_key="k")


def email(ledger_id: int, raw: bytes = RAW) -> OutgoingMessage:
    return OutgoingMessage(ledger_id, "email", "b@example.test", "a@acme.test", raw=raw)


async def test_email_outbox_writes_one_file_per_message(settings: Settings) -> None:
    messenger = open_messenger("email", "outbox", settings)
    await messenger.push(email(1))
    await messenger.push(email(2))
    await messenger.push(email(1, RAW.replace(b"Hi", b"Again")))  # a resend replaces
    await messenger.flush()
    await messenger.close()
    folder = settings.resolved_outbox_dir / "email"
    assert sorted(p.name for p in folder.iterdir()) == ["1.eml", "2.eml"]  # no temp files
    assert message_from_bytes((folder / "1.eml").read_bytes())["Subject"] == "Again"
    assert (folder / "2.eml").read_bytes() == RAW


async def test_email_outbox_never_leaves_half_a_file(tmp_path: Path) -> None:
    # A write that fails midway (here: the body is not bytes) must not touch the final file.
    outbox = EmailOutbox(tmp_path)
    await outbox.push(email(5))
    with pytest.raises(TypeError):
        await outbox.push(OutgoingMessage(5, "email", "b@x", "a@x", raw="text"))  # type: ignore
    assert (tmp_path / "5.eml").read_bytes() == RAW
    assert [p.name for p in tmp_path.iterdir()] == ["5.eml"]


async def test_sms_outbox_lines(settings: Settings) -> None:
    messenger = open_messenger("sms", "outbox?from=%2B15550100", settings)
    result = await messenger.push(OutgoingMessage(3, "sms", "+15551234567", "", body="€" * 80))
    await messenger.push(OutgoingMessage(4, "sms", "+15551234568", "+1999", body="Hello 😀",
                                         headers={"encoding": "UCS-2", "segments": "1"}))
    await messenger.close()
    assert result.segments == 1
    lines = (settings.resolved_outbox_dir / "sms" / "messages.jsonl").read_text().splitlines()
    first, second = map(json.loads, lines)
    assert first == {"ledger_id": 3, "to": "+15551234567", "from": "+15550100", "body": "€" * 80,
                     "segments": 1, "encoding": "GSM-7", "at": "2025-03-01T09:00:00+00:00"}
    assert second["from"] == "+1999" and second["encoding"] == "UCS-2"


@pytest.mark.parametrize(("body", "expected"), [
    ("A" * 160, ("GSM-7", 1)), ("A" * 161, ("GSM-7", 2)), ("€" * 80, ("GSM-7", 1)),
    ("Hello 😀", ("UCS-2", 1)), ("😀" * 36, ("UCS-2", 2)),
    ("A" * 152 + "€" + "A" * 152, ("GSM-7", 3)), ("A" * 153 * 2, ("GSM-7", 2)),
    ("é" * 70, ("GSM-7", 1)), ("ê" * 70, ("UCS-2", 1)), ("ê" * 71, ("UCS-2", 2)),
    ("ê" * 66 + "😀", ("UCS-2", 1)), ("", ("GSM-7", 1)),
])
def test_segment_fallback(body: str, expected: tuple[str, int]) -> None:
    assert sms_segments(body) == expected


async def test_webhook_outbox(settings: Settings) -> None:
    messenger = open_messenger("webhook", "outbox", settings)
    await messenger.push(OutgoingMessage(9, "webhook", "https://crm.test/h", "",
                                         body='{"id": 1}'))
    await messenger.close()
    line = (settings.resolved_outbox_dir / "webhook" / "calls.jsonl").read_text()
    assert json.loads(line)["body"] == {"id": 1} and json.loads(line)["url"] == "https://crm.test/h"


async def test_faulty_messenger(settings: Settings) -> None:
    messenger = open_messenger(
        "email", "faulty+outbox?fault_nth=2:transient,3:bounce&fault_to=grey@x.test:transient:1",
        settings)
    assert isinstance(messenger, FaultyMessenger)
    await messenger.push(email(1))
    with pytest.raises(TransientSendError):
        await messenger.push(email(2))
    with pytest.raises(PermanentSendError) as info:
        await messenger.push(email(3))
    assert info.value.bounce
    grey = OutgoingMessage(4, "email", "grey@x.test", "a@acme.test", raw=RAW)
    with pytest.raises(TransientSendError):
        await messenger.push(grey)
    await messenger.push(grey)  # greylisting: the second try passes
    await messenger.close()
    assert [m.ledger_id for m in messenger.delivered] == [1, 4]
    assert sorted(p.name for p in (settings.resolved_outbox_dir / "email").iterdir()) == [
        "1.eml", "4.eml"]


def test_faulty_bad_kind(settings: Settings) -> None:
    with pytest.raises(ReachError, match="unknown fault kind"):
        open_messenger("email", "faulty+outbox?fault_nth=1:explode", settings)
    with pytest.raises(ReachError, match="unknown option"):
        open_messenger("email", "outbox?pool=3", settings)
