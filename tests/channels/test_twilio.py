"""Twilio messenger against a local HTTP server that answers like the documented Messages API."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from campaigns.channels.base import OutgoingMessage, PermanentSendError, TransientSendError
from campaigns.channels.errors import ConfigurationSendError
from campaigns.channels.registry import open_messenger
from reach.settings import Settings
from tests.channels.servers import HttpServer, Request

SID, TOKEN = "AC0123456789abcdef0123456789abcdef", "tok3n"
STOPPED, INVALID, BUSY = "+15550000001", "+15550000002", "+15550000003"


class FakeTwilio:
    """The documented request and response shapes of POST …/Messages.json."""

    def __init__(self) -> None:
        self.busy_once = True
        self.count = 0

    def __call__(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        expected = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return self._error(401, 20003, "Authenticate")
        if request.path != f"/2010-04-01/Accounts/{SID}/Messages.json":
            return self._error(404, 20404, "The requested resource was not found")
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if "To" not in form or "Body" not in form or not ("From" in form or
                                                          "MessagingServiceSid" in form):
            return self._error(400, 21604, "A 'To' phone number is required.")
        if form["To"] == STOPPED:
            return self._error(400, 21610, "Attempt to send to unsubscribed recipient")
        if form["To"] == INVALID:
            return self._error(400, 21211, "The 'To' number is not a valid phone number.")
        if form["To"] == BUSY and self.busy_once:
            self.busy_once = False
            return self._error(429, 20429, "Too Many Requests")
        self.count += 1
        body = {"sid": f"SM{self.count:032x}", "status": "queued", "to": form["To"],
                "from": form.get("From"), "body": form["Body"],
                "num_segments": "2" if len(form["Body"]) > 160 else "1", "error_code": None,
                "account_sid": SID}
        return 201, {"Content-Type": "application/json"}, json.dumps(body).encode()

    @staticmethod
    def _error(status: int, code: int, message: str) -> tuple[int, dict[str, str], bytes]:
        body = {"code": code, "message": message, "status": status,
                "more_info": f"https://www.twilio.com/docs/errors/{code}"}
        return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


@pytest.fixture
def api() -> Iterator[HttpServer]:
    server = HttpServer(FakeTwilio())
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(project_dir=tmp_path, secret_key="k", tracking_base_url="https://t.acme.test")


def sms(to: str, body: str = "Hi Ann, 20% off today. Reply STOP to opt out") -> OutgoingMessage:
    return OutgoingMessage(ledger_id=7, channel="sms", to=to, sender="", body=body)


def url(api: HttpServer, token: str = TOKEN, extra: str = "") -> str:
    return f"twilio://{SID}:{token}@api.twilio.com?from=+15550100&base_url={api.url}{extra}"


async def test_sends_documented_form(api: HttpServer, settings: Settings) -> None:
    messenger = open_messenger("sms", url(api), settings)
    result = await messenger.push(sms("+15551234567", "x" * 200))
    await messenger.close()
    assert result.provider_id and result.provider_id.startswith("SM")
    assert result.segments == 2 and result.status == "queued"
    [request] = api.requests
    form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
    assert form == {"To": "+15551234567", "From": "+15550100", "Body": "x" * 200,
                    "StatusCallback": "https://t.acme.test/webhooks/sms/status"}


async def test_messaging_service(api: HttpServer, settings: Settings) -> None:
    messenger = open_messenger(
        "sms", f"twilio://{SID}:{TOKEN}@h?messaging_service_sid=MG1&base_url={api.url}", settings)
    await messenger.push(sms("+15551234567"))
    await messenger.close()
    assert b"MessagingServiceSid=MG1" in api.requests[0].body
    assert b"From=" not in api.requests[0].body


async def test_error_mapping(api: HttpServer, settings: Settings) -> None:
    messenger = open_messenger("sms", url(api), settings)
    with pytest.raises(PermanentSendError) as info:
        await messenger.push(sms(STOPPED))
    assert info.value.opt_out and not info.value.bounce and info.value.code == 21610
    with pytest.raises(PermanentSendError) as info:
        await messenger.push(sms(INVALID))
    assert info.value.bounce and not info.value.opt_out and info.value.code == 21211
    with pytest.raises(TransientSendError) as info:
        await messenger.push(sms(BUSY))
    assert info.value.code == 20429
    assert (await messenger.push(sms(BUSY))).status == "queued"  # 429 once, then 201
    await messenger.close()


async def test_wrong_token_stops_the_run(api: HttpServer, settings: Settings) -> None:
    messenger = open_messenger("sms", url(api, token="wrong"), settings)
    with pytest.raises(ConfigurationSendError) as info:
        await messenger.push(sms("+15551234567"))
    assert info.value.code == 20003 and info.value.to_reach_error().code == "C601"
    await messenger.close()
    await messenger.close()


async def test_unreachable_api_is_transient(settings: Settings) -> None:
    from tests.channels.servers import free_port

    messenger = open_messenger(
        "sms", f"twilio://{SID}:{TOKEN}@h?from=+1555&base_url=http://127.0.0.1:{free_port()}",
        settings)
    with pytest.raises(TransientSendError):
        await messenger.push(sms("+15551234567"))
    await messenger.close()
