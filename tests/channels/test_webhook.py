"""Webhook messenger against a local HTTP server that verifies the signature."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaigns.channels.base import OutgoingMessage, PermanentSendError, TransientSendError
from campaigns.channels.registry import open_messenger
from campaigns.channels.webhook import verify_signature
from reach.errors import ReachError
from reach.settings import Settings
from tests.channels.servers import HttpServer, Request

SECRET = "s3cret-key"


class Receiver:
    """Checks X-Reach-Signature like a CRM would; fails the first calls when told to."""

    def __init__(self) -> None:
        self.fail_first: dict[str, int] = {"/flaky": 2, "/down": 99}
        self.accepted: list[dict[str, object]] = []

    def __call__(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        signature = request.headers.get("X-Reach-Signature")
        if not verify_signature([SECRET], request.body, signature):
            return 401, {}, b"bad signature"
        if not request.headers.get("X-Reach-Timestamp", "").isdigit():
            return 400, {}, b"no timestamp"
        left = self.fail_first.get(request.path, 0)
        if left:
            self.fail_first[request.path] = left - 1
            return 503, {}, b"busy"
        if request.path == "/gone":
            return 410, {}, b"gone"
        self.accepted.append(request.json())
        return 200, {"X-Request-Id": "r1"}, b"ok"


@pytest.fixture
def receiver() -> Iterator[tuple[HttpServer, Receiver]]:
    handler = Receiver()
    server = HttpServer(handler)
    yield server, handler
    server.stop()


def call(base: str, path: str, body: object, ledger_id: int = 1) -> OutgoingMessage:
    return OutgoingMessage(ledger_id=ledger_id, channel="webhook", to=base + path, sender="",
                           body=json.dumps(body))


async def test_signed_post_and_retries(receiver: tuple[HttpServer, Receiver],
                                       tmp_path: Path) -> None:
    server, handler = receiver
    settings = Settings(project_dir=tmp_path, secret_key=SECRET)
    messenger = open_messenger("webhook", "webhook?retries=2&backoff=0.01", settings)
    result = await messenger.push(call(server.url, "/ok", {"contact": 1}))
    assert result.provider_id == "r1"
    await messenger.push(call(server.url, "/flaky", {"contact": 2}, ledger_id=2))
    assert handler.accepted == [{"contact": 1}, {"contact": 2}]
    flaky = [r for r in server.requests if r.path == "/flaky"]
    assert len(flaky) == 3 and {r.headers["X-Reach-Delivery"] for r in flaky} == {"2"}
    with pytest.raises(TransientSendError, match="3 time"):
        await messenger.push(call(server.url, "/down", {}))
    with pytest.raises(PermanentSendError) as info:
        await messenger.push(call(server.url, "/gone", {}))
    assert info.value.code == 410 and not info.value.bounce
    await messenger.close()


async def test_wrong_key_is_refused_by_receiver(receiver: tuple[HttpServer, Receiver],
                                                tmp_path: Path) -> None:
    server, handler = receiver
    settings = Settings(project_dir=tmp_path, secret_key="another-key")
    messenger = open_messenger("webhook", "webhook?retries=0", settings)
    with pytest.raises(PermanentSendError, match="401"):
        await messenger.push(call(server.url, "/ok", {"contact": 1}))
    await messenger.close()
    assert handler.accepted == []


def test_webhook_needs_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ReachError, match="secret_key"):
        open_messenger("webhook", "webhook", Settings(project_dir=tmp_path))
