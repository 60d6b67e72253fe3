"""SMTP messenger against a real aiosmtpd server on loopback."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st

from campaigns.channels.base import (
    OutcomeUnknownError,
    OutgoingMessage,
    PermanentSendError,
    TransientSendError,
)
from campaigns.channels.errors import ConfigurationSendError
from campaigns.channels.registry import open_messenger
from campaigns.channels.smtp import SmtpMessenger, wire_payload
from reach.errors import ReachError
from reach.settings import Settings
from tests.channels.servers import RecordingHandler, self_signed_cert, start_smtp


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(project_dir=tmp_path, secret_key="k")


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def server(handler: RecordingHandler) -> Iterator[str]:
    controller = start_smtp(handler)
    yield f"127.0.0.1:{controller.port}"
    controller.stop()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


def server_tls(cert: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert)
    return context


def mail(ledger_id: int, to: str = "ann@example.test", body: str = "Hello\n") -> OutgoingMessage:
    msg = EmailMessage()
    msg["From"] = "news@acme.test"
    msg["To"] = to
    msg["Subject"] = f"Message {ledger_id}"
    msg["Message-ID"] = f"<{ledger_id}@acme.test>"
    msg.set_content(body)
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    return OutgoingMessage(ledger_id=ledger_id, channel="email", to=to,
                           sender="bounces@acme.test", raw=raw)


def smtp(url: str, settings: Settings) -> SmtpMessenger:
    messenger = open_messenger("email", url, settings)
    assert isinstance(messenger, SmtpMessenger)
    return messenger


async def test_delivers_raw_bytes_unchanged(server: str, handler: RecordingHandler,
                                            settings: Settings) -> None:
    body = ".leading dot\n..two dots\nnot at start .\n"
    message = mail(1, body=body)
    messenger = smtp(f"smtp://{server}?starttls=false", settings)
    result = await messenger.push(message)
    await messenger.close()
    assert result.provider_id and "queued as" in result.provider_id
    [got] = handler.messages
    assert got.mail_from == "bounces@acme.test" and got.rcpt_tos == ["ann@example.test"]
    assert got.content == message.raw  # dot-stuffing undone by the server: same bytes
    assert message_from_bytes(got.content).get_payload().replace("\r\n", "\n") == body


async def test_same_wire_bytes_as_aiosmtplib(server: str, handler: RecordingHandler,
                                             settings: Settings) -> None:
    # Lone LF, lone CR, a leading dot and no final newline: the slow path must match too.
    raw = b"Subject: odd\nX: y\r\n\r\n.dot\rcr only\n.\nend"
    messenger = smtp(f"smtp://{server}?starttls=false", settings)
    await messenger.push(OutgoingMessage(1, "email", "a@example.test", "b@acme.test", raw=raw))
    await messenger.close()
    host, port = server.split(":")
    async with aiosmtplib.SMTP(hostname=host, port=int(port), start_tls=False) as client:
        await client.sendmail("b@acme.test", ["a@example.test"], raw)
    ours, theirs = handler.messages
    assert ours.content == theirs.content


@given(st.binary(max_size=300))
def test_wire_payload_equals_aiosmtplib(raw: bytes) -> None:
    normalized = normalize_message_line_endings(raw)
    expected = PERIOD_REGEX.sub(b"..", normalized) + b".\r\n"
    assert wire_payload(raw) == (len(normalized), expected)


async def test_pool_reuses_connections(server: str, handler: RecordingHandler,
                                       settings: Settings) -> None:
    messenger = smtp(f"smtp://{server}?starttls=false&pool=4", settings)
    results = await asyncio.gather(*(messenger.push(mail(i, f"u{i}@example.test"))
                                     for i in range(200)))
    await messenger.close()
    assert len(results) == 200
    assert sorted(m.rcpt_tos[0] for m in handler.messages) == sorted(
        f"u{i}@example.test" for i in range(200))
    assert 1 <= handler.connections <= 4
    assert messenger.connections_opened == handler.connections


async def test_max_connections_caps_pool(server: str, handler: RecordingHandler,
                                         settings: Settings) -> None:
    messenger = smtp(f"smtp://{server}?starttls=false&pool=8&max_connections=2", settings)
    await asyncio.gather(*(messenger.push(mail(i, f"u{i}@example.test")) for i in range(30)))
    await messenger.close()
    assert len(handler.messages) == 30 and handler.connections <= 2


async def test_451_is_transient_then_delivers(server: str, handler: RecordingHandler,
                                              settings: Settings) -> None:
    handler.rcpt_replies["grey@example.test"] = ["451 4.7.1 Greylisted, try again"]
    messenger = smtp(f"smtp://{server}?starttls=false&pool=1", settings)
    with pytest.raises(TransientSendError) as info:
        await messenger.push(mail(1, "grey@example.test"))
    assert info.value.code == 451 and info.value.transient
    await messenger.push(mail(1, "grey@example.test"))  # the retry goes through
    await messenger.push(mail(2, "next@example.test"))  # and the connection still works
    await messenger.close()
    assert [m.rcpt_tos for m in handler.messages] == [["grey@example.test"],
                                                      ["next@example.test"]]
    assert handler.connections == 1


async def test_550_rcpt_is_a_bounce(server: str, handler: RecordingHandler,
                                    settings: Settings) -> None:
    handler.rcpt_replies["gone@example.test"] = ["550 5.1.1 No such user"]
    handler.data_replies["spam@example.test"] = ["554 5.7.1 Rejected"]
    messenger = smtp(f"smtp://{server}?starttls=false&pool=1", settings)
    with pytest.raises(PermanentSendError) as info:
        await messenger.push(mail(1, "gone@example.test"))
    assert info.value.bounce and not info.value.transient and info.value.code == 550
    with pytest.raises(PermanentSendError) as info:
        await messenger.push(mail(2, "spam@example.test"))
    assert info.value.bounce and info.value.code == 554
    await messenger.push(mail(3, "ok@example.test"))
    await messenger.close()
    assert [m.rcpt_tos for m in handler.messages] == [["ok@example.test"]]


async def test_drop_after_body_is_unknown_and_reconnects(
        server: str, handler: RecordingHandler, settings: Settings) -> None:
    # The server got the whole message but its reply never came: resending could deliver
    # it twice, so the outcome is 'unknown', not a transient error to retry.
    handler.drop_in_data.add("drop@example.test")
    messenger = smtp(f"smtp://{server}?starttls=false&pool=1", settings)
    await messenger.push(mail(1, "a@example.test"))
    with pytest.raises(OutcomeUnknownError) as info:
        await messenger.push(mail(2, "drop@example.test"))
    assert info.value.code == "disconnected"
    await messenger.push(mail(3, "b@example.test"))
    await messenger.close()
    assert handler.connections == 2
    assert [m.rcpt_tos[0] for m in handler.messages] == [
        "a@example.test", "drop@example.test", "b@example.test"]


async def test_server_closing_idle_connections(server: str, handler: RecordingHandler,
                                               settings: Settings) -> None:
    handler.close_after_data = True
    messenger = smtp(f"smtp://{server}?starttls=false&pool=1", settings)
    for i in range(5):
        await messenger.push(mail(i, f"u{i}@example.test"))
        await asyncio.sleep(0.02)  # let the server's close arrive: the next push must cope
    await messenger.close()
    assert len(handler.messages) == 5 and handler.connections == 5


async def test_connection_refused_is_transient(settings: Settings) -> None:
    from tests.channels.servers import free_port

    messenger = smtp(f"smtp://127.0.0.1:{free_port()}?timeout=5", settings)
    with pytest.raises(TransientSendError) as info:
        await messenger.push(mail(1))
    assert info.value.code == "connect"
    await messenger.close()
    await messenger.close()


async def test_starttls_and_auth(cert: tuple[Path, Path], settings: Settings) -> None:
    handler = RecordingHandler()
    controller = start_smtp(handler, tls_context=server_tls(cert), users={"ann": "s3cret"},
                            require_starttls=True)
    try:
        base = f"127.0.0.1:{controller.port}?starttls=true&cert_bundle={cert[0]}"
        messenger = smtp(f"smtp://ann:s3cret@{base}", settings)
        await messenger.push(mail(1))
        await messenger.close()
        assert handler.auths == ["ann"] and len(handler.messages) == 1

        wrong = smtp(f"smtp://ann:nope@{base}", settings)
        with pytest.raises(ConfigurationSendError) as info:
            await wrong.push(mail(2))
        assert info.value.to_reach_error().code == "C601"
        await wrong.close()

        unverified = smtp(f"smtp://ann:s3cret@127.0.0.1:{controller.port}?starttls=true",
                          settings)
        with pytest.raises(ConfigurationSendError, match="does not verify"):
            await unverified.push(mail(3))
        await unverified.close()
    finally:
        controller.stop()


async def test_implicit_tls(cert: tuple[Path, Path], settings: Settings) -> None:
    handler = RecordingHandler()
    controller = start_smtp(handler, tls_context=server_tls(cert), implicit_tls=True)
    try:
        messenger = smtp(f"smtps://127.0.0.1:{controller.port}?validate_certs=false", settings)
        await asyncio.gather(*(messenger.push(mail(i, f"u{i}@example.test")) for i in range(6)))
        await messenger.close()
        assert len(handler.messages) == 6
    finally:
        controller.stop()


def test_bad_urls_are_configuration_errors(settings: Settings) -> None:
    for url, text in [("smtp://h?pool=0", "pool"), ("smtp://h?pol=3", "unknown option"),
                      ("smtps://h?starttls=true", "implicit"), ("smtp://?pool=2", "no host"),
                      ("smtp://h?starttls=maybe", "true or false"),
                      ("twilio://a:b@h", "cannot carry email"), ("ftp://x", "unknown email")]:
        with pytest.raises(ReachError, match=text) as info:
            open_messenger("email", url, settings)
        assert info.value.code == "C601"


async def test_max_per_second_spaces_messages(server: str, handler: RecordingHandler,
                                              settings: Settings) -> None:
    import time

    messenger = smtp(f"smtp://{server}?starttls=false&pool=1&max_per_second=100", settings)
    started = time.monotonic()
    await asyncio.gather(*(messenger.push(mail(i, f"u{i}@example.test")) for i in range(11)))
    elapsed = time.monotonic() - started
    await messenger.close()
    # 11 messages at 100/s need at least 10 intervals of 10 ms (a lower bound cannot flake).
    assert elapsed >= 0.095 and len(handler.messages) == 11
