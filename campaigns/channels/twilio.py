"""SMS through a Twilio-compatible Messages API over httpx.

``twilio://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com?from=+15550100`` (or
``messaging_service_sid=MG…`` instead of ``from``); ``base_url=http://127.0.0.1:PORT`` points
it at a local server in tests. Request and response shapes are Twilio's documented ones:
``POST /2010-04-01/Accounts/{Sid}/Messages.json`` with form fields, 201 JSON with ``sid``,
``status`` and ``num_segments``; errors are JSON ``{code, message, status}``.
"""

from __future__ import annotations

from typing import Any

import httpx

from campaigns.channels.base import (
    OutgoingMessage,
    PermanentSendError,
    SendError,
    SendResult,
    TransientSendError,
)
from campaigns.channels.errors import ConfigurationSendError, transport_config_error
from campaigns.channels.ratelimit import RateLimiter
from campaigns.channels.urls import TransportUrl
from reach.settings import Settings

_OPTIONS = {"from", "messaging_service_sid", "base_url", "max_per_second", "max_connections",
            "timeout", "status_callback"}

# Twilio error codes (https://www.twilio.com/docs/api/errors) that decide the outcome.
OPT_OUT_CODES = {21610}  # recipient replied STOP: record the opt-out, never retry
BAD_NUMBER_CODES = {21211, 21214, 21217, 21401, 21407, 21612, 21614}  # the number is bad
CONFIG_CODES = {20003, 20005, 20404, 21212, 21408, 21603, 21606, 21659}  # our account/sender


class TwilioMessenger:
    """Sends SMS with one pooled ``httpx.AsyncClient``."""

    name = "twilio"

    def __init__(self, url: TransportUrl, settings: Settings) -> None:
        url.check_known(_OPTIONS)
        if not (url.username and url.password):
            raise transport_config_error(
                f"Twilio transport URL needs the account SID and token: {url.redacted()}",
                "write it as twilio://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com?from=+15550100",
            )
        self.account_sid = url.username
        self.sender = url.text("from") or ""
        self.messaging_service_sid = url.text("messaging_service_sid")
        base = url.text("base_url") or f"https://{url.host or 'api.twilio.com'}"
        self.endpoint = f"{base.rstrip('/')}/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        default_callback = f"{settings.tracking_base_url.rstrip('/')}/webhooks/sms/status"
        self.status_callback = url.text("status_callback", default_callback)
        self._limiter = RateLimiter(url.number("max_per_second", None))
        connections = url.integer("max_connections", 10, minimum=1)
        self._client = httpx.AsyncClient(
            auth=(self.account_sid, url.password),
            timeout=url.number("timeout", 30.0) or 30.0,
            limits=httpx.Limits(max_connections=connections,
                                max_keepalive_connections=connections),
            headers={"Accept": "application/json"},
        )

    async def push(self, message: OutgoingMessage) -> SendResult:
        """POST one message; map Twilio's answer to a result or a send error."""
        form = {"To": message.to, "Body": message.body}
        if self.messaging_service_sid and not message.sender:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            sender = message.sender or self.sender
            if not sender:
                raise ConfigurationSendError(
                    "no SMS sender: the message has none and the transport URL has no from=",
                    "21603", hint="add ?from=+1555… or ?messaging_service_sid=MG… to "
                    "sms_transport")
            form["From"] = sender
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        await self._limiter.acquire()
        try:
            response = await self._client.post(self.endpoint, data=form)
        except httpx.TransportError as exc:
            # A timeout after the request went out may have sent it; the ledger decides.
            raise TransientSendError(f"SMS API unreachable: {exc!r}", "connect") from exc
        if response.status_code in (200, 201):
            data = _json(response)
            segments = data.get("num_segments")
            return SendResult(
                provider_id=data.get("sid"),
                segments=int(segments) if segments not in (None, "") else None,
                status=str(data.get("status") or "queued"),
            )
        raise _error_for(response, message)

    async def flush(self) -> None:
        """Nothing is buffered: each push waited for the API's answer."""

    async def close(self) -> None:
        """Close the HTTP connection pool; safe twice."""
        await self._client.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_for(response: httpx.Response, message: OutgoingMessage) -> SendError:
    """Twilio error response → send error (see the code sets above)."""
    data = _json(response)
    code = data.get("code")
    detail = data.get("message") or response.text[:200]
    text = f"SMS to {message.to}: HTTP {response.status_code}, Twilio {code}: {detail}"
    status = response.status_code
    if status == 429 or status >= 500:
        return TransientSendError(text, code or status)
    if code in OPT_OUT_CODES:
        return PermanentSendError(text, code, bounce=False, opt_out=True)
    if code in BAD_NUMBER_CODES:
        return PermanentSendError(text, code, bounce=True)
    if status in (401, 403) or code in CONFIG_CODES:
        return ConfigurationSendError(
            text, code or status,
            hint="check the account SID, token and sender (from= / messaging_service_sid=) "
            "in sms_transport")
    return PermanentSendError(text, code or status, bounce=False)
