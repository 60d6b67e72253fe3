"""The outermost ASGI layer: path guard, the open pixel's fast path, request counting.

The pixel is by far the most frequent request (every image-loading mail client, every
privacy proxy), so it is answered here, before Starlette's exception handling and router:
verify the token (one HMAC), classify from the request line and user agent, append the
open to the queue, send two pre-built ASGI messages. That keeps a worker within reach of a
bare "return the GIF" route while every open is persisted. Everything else goes through
Starlette; responses are counted by route and status on the way out (a pure ASGI wrapper:
Starlette's ``BaseHTTPMiddleware`` would cost more than the pixel itself).

The pixel always answers 200 with the GIF: to a forged, truncated or garbage token
(nothing recorded), to an oversized path, and whatever happens to the recording.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reach import clock
from tracking.classify import clean_user_agent, request_reason
from tracking.metrics import PIXEL, PIXEL_HEADERS, Metrics, route_label
from tracking.queue import EventQueue
from tracking.store import engagement_op
from tracking.tokens import BadToken, Signer

log = logging.getLogger("reach.tracking")

MAX_PATH = 2048  # our tokens are far shorter; anything longer is probing or garbage

_PIXEL_START = {"type": "http.response.start", "status": 200, "headers": PIXEL_HEADERS}
_PIXEL_BODY = {"type": "http.response.body", "body": PIXEL}
_EMPTY_BODY = {"type": "http.response.body", "body": b""}
_TOO_LONG = b"path too long\n"
_TOO_LONG_START = {"type": "http.response.start", "status": 400, "headers": [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(_TOO_LONG)).encode()),
]}


class EdgeMiddleware:
    """Wraps the Starlette app; see the module docstring."""

    def __init__(self, app: ASGIApp, metrics: Metrics, signer: Signer,
                 queue: EventQueue) -> None:
        self.app = app
        self.metrics = metrics
        self.signer = signer
        self.queue = queue

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        requests = self.metrics.requests
        if path.startswith("/o/") and method in ("GET", "HEAD"):
            if len(path) <= MAX_PATH and path.endswith(".gif"):
                self._record_open(scope, path[3:-4], method)
            await send(_PIXEL_START)
            await send(_EMPTY_BODY if method == "HEAD" else _PIXEL_BODY)
            requests[("/o", 200)] += 1
            return
        label = route_label(path)
        if len(scope.get("raw_path") or path) > MAX_PATH:
            await send(_TOO_LONG_START)
            await send(_EMPTY_BODY if method == "HEAD" else
                       {"type": "http.response.body", "body": _TOO_LONG})
            requests[(label, 400)] += 1
            return
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            requests[(label, status)] += 1

    def _record_open(self, scope: Scope, token: str, method: str) -> None:
        try:
            message_id = self.signer.verify_message(token)
        except BadToken:
            return
        try:
            user_agent = None
            for name, value in scope["headers"]:
                if name == b"user-agent":
                    user_agent = value.decode("latin-1")
                    break
            client = scope.get("client")
            self.queue.put(engagement_op(
                message_id, "open", clock.now(),
                reason=request_reason(method, user_agent),
                user_agent=clean_user_agent(user_agent),
                ip=client[0][:64] if client else None,
            ))
        except Exception:  # the image must answer whatever happens to the recording
            log.exception("could not queue an open")
