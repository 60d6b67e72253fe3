"""Machine-to-machine routes: ``POST /events`` and the provider callbacks.

``/events`` and ``/webhooks/email/bounce`` need the API key (header ``X-Reach-Key``).
``/webhooks/sms/status`` is called by Twilio, which cannot send our header: it is checked
with Twilio's own ``X-Twilio-Signature`` when the auth token is known (from a ``twilio://``
``sms_transport``); otherwise the API key is required, as the header or as the password of
HTTP basic auth in the callback URL (``https://reach:KEY@t.acme.test/webhooks/sms/status``);
with neither configured the route accepts callbacks unauthenticated (local development with
the outbox transport), and the server logs a warning at start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reach.errors import ReachError
from tracking import ledger
from tracking.bounces import ReportError, parse_body
from tracking.http import (
    MAX_FORM_BODY,
    MAX_JSON_BODY,
    MAX_REPORT_BODY,
    BodyTooLarge,
    Context,
    api_key_error,
    json_error,
    read_body,
)

log = logging.getLogger("reach.tracking")

_TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def twilio_signature(token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's request signature: HMAC-SHA1 of the URL and the sorted form fields."""
    data = url + "".join(k + v for k, v in sorted(params))
    digest = hmac.new(token.encode(), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _too_large(limit: int) -> JSONResponse:
    return json_error(413, "body_too_large", f"request body over {limit} bytes; send less "
                      "per request")


def _basic_password(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return ""
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.split(":", 1)[1] if ":" in decoded else ""


class WebhookRoutes:
    """Handlers bound to the server's :class:`Context`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def events(self, request: Request) -> Response:
        """POST /events: one event or ``{"events": [...]}``, recorded via audiences.events."""
        refused = api_key_error(self.ctx.settings, request)
        if refused is not None:
            return refused
        try:
            body = await read_body(request, MAX_JSON_BODY)
        except BodyTooLarge:
            return _too_large(MAX_JSON_BODY)
        try:
            data = json.loads(body)
        except ValueError as exc:
            return json_error(400, "malformed_json", f"body is not JSON: {exc}")
        if isinstance(data, dict) and "events" in data:
            data = data["events"]
        items = [data] if isinstance(data, dict) else data
        if not isinstance(items, list) or not items:
            return json_error(400, "invalid_events", "send one event object, a list, or "
                              '{"events": [...]}')
        for index, item in enumerate(items):
            problem = _event_problem(item)
            if problem:
                return json_error(400, "invalid_event", f"event {index}: {problem}", index=index)
        try:
            from audiences.events import record_events
        except ImportError:
            return json_error(503, "events_unavailable", "event recording is not installed")

        def write() -> int:
            with self.ctx.engine.begin() as conn:
                return record_events(conn, items)

        try:
            count = await anyio.to_thread.run_sync(write)
        except ReachError as exc:
            return json_error(400, exc.code, exc.message, hint=exc.hint)
        except (ValueError, TypeError) as exc:
            return json_error(400, "invalid_event", str(exc))
        except Exception:
            log.exception("POST /events: database error")
            return json_error(503, "database_unavailable", "could not record events; retry")
        self.ctx.metrics.events_recorded += count
        return JSONResponse({"received": len(items), "recorded": count})

    async def email_bounce(self, request: Request) -> Response:
        """POST /webhooks/email/bounce: a DSN, an ARF report or the JSON form."""
        refused = api_key_error(self.ctx.settings, request)
        if refused is not None:
            return refused
        try:
            body = await read_body(request, MAX_REPORT_BODY)
        except BodyTooLarge:
            return _too_large(MAX_REPORT_BODY)
        content_type = request.headers.get("content-type", "message/rfc822")
        try:
            records = parse_body(body, content_type)
        except ReportError as exc:
            return json_error(400, "unreadable_report", str(exc))
        except Exception as exc:  # the email package on hostile input
            return json_error(400, "unreadable_report", f"cannot parse the report: {exc}")

        def apply() -> list[dict[str, Any]]:
            return [ledger.apply_feedback(self.ctx.engine, self.ctx.signer, fb)
                    for fb in records]

        try:
            results = await anyio.to_thread.run_sync(apply)
        except Exception:
            log.exception("bounce webhook: database error")
            return json_error(503, "database_unavailable", "could not record the report; retry")
        return JSONResponse({"processed": len(results), "results": results})

    def _sms_authorised(self, request: Request, params: list[tuple[str, str]]) -> bool:
        token = self.ctx.twilio_token
        if token:
            base = self.ctx.settings.tracking_base_url.rstrip("/")
            url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
            given = request.headers.get("x-twilio-signature", "")
            return hmac.compare_digest(given.encode(),
                                       twilio_signature(token, url, params).encode())
        key = self.ctx.settings.api_key
        if key:
            given = request.headers.get("x-reach-key") or _basic_password(request)
            return hmac.compare_digest(given.encode(), key.encode())
        return True

    async def sms_status(self, request: Request) -> Response:
        """POST /webhooks/sms/status: delivery callbacks and inbound keyword replies."""
        try:
            await read_body(request, MAX_FORM_BODY)
            form = await request.form(max_files=0, max_fields=100)
        except BodyTooLarge:
            return _too_large(MAX_FORM_BODY)
        except Exception as exc:
            return json_error(400, "malformed_form", f"cannot read the form: {exc}")
        params = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        if not self._sms_authorised(request, params):
            return json_error(403, "bad_signature", "X-Twilio-Signature (or X-Reach-Key) does "
                              "not match; check the auth token and tracking_base_url")
        fields = dict(params)
        sid = fields.get("MessageSid") or fields.get("SmsSid") or ""
        status = fields.get("MessageStatus") or fields.get("SmsStatus") or ""
        body = fields.get("Body")
        try:
            if body is not None and status.lower() in ("", "received"):
                sender = fields.get("From", "")
                if not sender:
                    return json_error(400, "missing_field", "inbound message without From")
                await anyio.to_thread.run_sync(
                    ledger.apply_sms_inbound, self.ctx.engine, sid, sender, body)
                return Response(_TWIML_EMPTY, media_type="text/xml")
            if not sid or not status:
                return json_error(400, "missing_field", "MessageSid and MessageStatus required")
            await anyio.to_thread.run_sync(
                ledger.apply_sms_status, self.ctx.engine, sid, status,
                fields.get("ErrorCode") or None)
        except Exception:
            log.exception("sms webhook: database error")
            return json_error(503, "database_unavailable", "could not record the callback")
        return Response(status_code=204)


def _event_problem(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "not an object"
    contact = item.get("contact")
    if not isinstance(contact, str) or not contact.strip():
        return "'contact' (email or external_id) is required"
    kind = item.get("type")
    if not isinstance(kind, str) or not kind.strip() or len(kind) > 64:
        return "'type' is required (a name of at most 64 characters)"
    if "properties" in item and not isinstance(item["properties"], dict | type(None)):
        return "'properties' must be an object"
    if "occurred_at" in item and not isinstance(item["occurred_at"], str | type(None)):
        return "'occurred_at' must be an ISO 8601 string"
    return None
