"""Webhook messenger (the journey ``webhook`` step): a signed JSON POST, retried a little.

Every call carries ``X-Reach-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with the
secret key>``, ``X-Reach-Timestamp`` (Unix seconds) and ``X-Reach-Delivery`` (the ledger id,
identical on every retry so the receiver can drop duplicates). 5xx, 408, 429 and connection
errors are retried inside ``push`` with exponential backoff and full jitter, then reported
as transient so the ledger retries later; other 4xx are permanent.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time

import httpx

from campaigns.channels.base import (
    OutgoingMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
)
from campaigns.channels.errors import transport_config_error
from campaigns.channels.ratelimit import RateLimiter
from campaigns.channels.urls import TransportUrl
from reach.settings import Settings

SIGNATURE_HEADER = "X-Reach-Signature"
TIMESTAMP_HEADER = "X-Reach-Timestamp"
DELIVERY_HEADER = "X-Reach-Delivery"
_OPTIONS = {"retries", "backoff", "timeout", "max_per_second", "max_connections"}
_RETRY_STATUS = {408, 425, 429}


def sign_body(secret: str, body: bytes) -> str:
    """The ``X-Reach-Signature`` value for ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secrets: list[str], body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` under any of ``secrets``."""
    if not header:
        return False
    return any(hmac.compare_digest(sign_body(key, body), header) for key in secrets if key)


class WebhookMessenger:
    """POSTs ``message.body`` (JSON text) to ``message.to``."""

    name = "webhook"

    def __init__(self, url: TransportUrl, settings: Settings) -> None:
        url.check_known(_OPTIONS)
        if not settings.secret_key:
            raise transport_config_error(
                "webhooks are signed with secret_key, which is empty",
                "run `reach init` or set REACH_SECRET_KEY",
            )
        self._secret = settings.secret_key
        self.retries = url.integer("retries", 2, minimum=0)
        self.backoff = url.number("backoff", 0.5) or 0.0
        self._limiter = RateLimiter(url.number("max_per_second", None))
        connections = url.integer("max_connections", 10, minimum=1)
        self._client = httpx.AsyncClient(
            timeout=url.number("timeout", 10.0) or 10.0,
            limits=httpx.Limits(max_connections=connections),
            follow_redirects=False,
        )

    async def push(self, message: OutgoingMessage) -> SendResult:
        """POST with retries; raise transient after the last one, permanent on other 4xx."""
        if not message.to.startswith(("http://", "https://")):
            raise PermanentSendError(f"webhook URL must be http(s): {message.to!r}", "url",
                                     bounce=False)
        body = message.body.encode("utf-8")
        headers = {"Content-Type": "application/json", **message.headers,
                   SIGNATURE_HEADER: sign_body(self._secret, body),
                   DELIVERY_HEADER: str(message.ledger_id)}
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                # Full jitter: spreads retries of many calls to one struggling receiver.
                await asyncio.sleep(random.uniform(0, self.backoff * 2 ** (attempt - 1)))
            headers[TIMESTAMP_HEADER] = str(int(time.time()))
            await self._limiter.acquire()
            try:
                response = await self._client.post(message.to, content=body, headers=headers)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            status = response.status_code
            if 200 <= status < 300:
                return SendResult(provider_id=response.headers.get("x-request-id"),
                                  status=str(status))
            last = f"HTTP {status} {response.text[:200]}"
            if status >= 500 or status in _RETRY_STATUS:
                continue
            raise PermanentSendError(f"webhook {message.to}: {last}", status, bounce=False)
        raise TransientSendError(
            f"webhook {message.to} failed {self.retries + 1} time(s): {last}", "webhook")

    async def flush(self) -> None:
        """Nothing is buffered: each push waited for the receiver's answer."""

    async def close(self) -> None:
        """Close the HTTP connection pool; safe twice."""
        await self._client.aclose()
