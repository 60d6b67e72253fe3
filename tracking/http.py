"""What every route shares: the server's context and small request helpers."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse

from reach.settings import Settings
from tracking.classify import Classifier
from tracking.metrics import Metrics
from tracking.queue import EventQueue
from tracking.tokens import Signer

MAX_JSON_BODY = 1024 * 1024  # POST /events and the JSON bounce form
MAX_REPORT_BODY = 2 * 1024 * 1024  # a DSN or ARF carries the original message's headers
MAX_FORM_BODY = 64 * 1024  # unsubscribe and SMS callbacks are a few hundred bytes


@dataclass
class Context:
    """The server's collaborators, built once by ``create_app``."""

    settings: Settings
    engine: Engine
    signer: Signer
    queue: EventQueue
    classifier: Classifier
    metrics: Metrics
    view_renderer: Callable[[int], str | None] | None
    twilio_token: str | None


class BodyTooLarge(Exception):
    """The request body is over the route's limit (answered 413)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused past ``limit`` bytes without reading the rest into memory.

    The body is kept on the request so that ``request.form()`` parses these same bytes.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's own cache: form() then reads it from here
    return body


def json_error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """A JSON error body: a stable code and a message that says what to do."""
    return JSONResponse({"error": {"code": code, "message": message, **extra}},
                        status_code=status)


def api_key_error(settings: Settings, request: Request) -> JSONResponse | None:
    """None when the request carries the API key; otherwise the response refusing it."""
    expected = settings.api_key
    if not expected:
        return json_error(403, "api_key_not_configured",
                          "this route is disabled: set api_key in reach.toml "
                          "(or REACH_API_KEY) and send it in the X-Reach-Key header")
    given = request.headers.get("x-reach-key", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return json_error(401, "bad_api_key", "missing or wrong X-Reach-Key header")
    return None


def bearer_error(expected: str, request: Request) -> JSONResponse | None:
    """None when no token is configured or the request carries it as a Bearer token."""
    if not expected:
        return None
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                          expected.encode()):
        return None
    response = json_error(401, "bad_metrics_token",
                          "send the metrics_token of reach.toml as 'Authorization: Bearer …'")
    response.headers["www-authenticate"] = 'Bearer realm="reach-metrics"'
    return response


def client_ip(request: Request) -> str | None:
    """The client address (uvicorn applies X-Forwarded-For from trusted proxies)."""
    client = request.client
    return client.host[:64] if client else None
