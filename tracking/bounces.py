"""Parse bounce and complaint reports into :class:`Feedback` records.

Three shapes reach ``POST /webhooks/email/bounce``:

* an RFC 3464 delivery status notification (``multipart/report;
  report-type=delivery-status``): one record per recipient whose ``Action`` is ``failed``
  or ``delayed``; ``Status: 5.x.x`` is permanent, ``4.x.x`` transient;
* an RFC 5965 abuse report (``multipart/report; report-type=feedback-report``,
  ``Feedback-Type: abuse``): a complaint;
* a JSON form for providers that call webhooks: ``{"email", "type": "bounce"|"complaint",
  "permanent", "message_id"?, "status"?, "diagnostic"?}``, one object or a list.

A report can be POSTed as the whole mail (``message/rfc822``, headers included) or as the
bare report body with the HTTP ``Content-Type: multipart/report; boundary=…``. The ledger id
is read from ``X-Reach-Message`` in the returned original message, with its ``Message-ID``
as the second way to match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser
from email.utils import parseaddr
from typing import Any

_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})")


class ReportError(ValueError):
    """A body that is not a delivery status notification, an abuse report or the JSON form."""


@dataclass(frozen=True)
class Feedback:
    """One bounce or complaint about one recipient."""

    kind: str  # bounce | complaint
    recipient: str | None
    permanent: bool
    status: str | None = None  # enhanced status code, e.g. 5.1.1
    diagnostic: str | None = None
    ledger_ref: str | None = None  # X-Reach-Message of the original message
    message_id: str | None = None  # Message-ID of the original message


def parse_body(body: bytes, content_type: str) -> list[Feedback]:
    """The feedback records in a webhook body of the given HTTP content type."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json":
        import json

        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ReportError(f"malformed JSON: {exc}") from exc
        return parse_json(data)
    if media.startswith("multipart/"):
        # The report body itself was posted: give the parser the header it needs.
        body = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body
    return parse_report(body)


def parse_json(data: Any) -> list[Feedback]:
    """The JSON form: one object, a list of them, or ``{"events": [...]}``."""
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        data = data["events"]
    items = data if isinstance(data, list) else [data]
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ReportError(f"item {index} is not an object")
        kind = item.get("type")
        if kind not in ("bounce", "complaint"):
            raise ReportError(f"item {index}: type must be 'bounce' or 'complaint'")
        email = item.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise ReportError(f"item {index}: email is required")
        ref = item.get("message_id")
        out.append(Feedback(
            kind=kind,
            recipient=email.strip().lower(),
            permanent=kind == "complaint" or bool(item.get("permanent", True)),
            status=_text(item.get("status")),
            diagnostic=_text(item.get("diagnostic")),
            ledger_ref=str(ref) if ref is not None else None,
        ))
    return out


def parse_report(raw: bytes) -> list[Feedback]:
    """The records of an RFC 3464 DSN or an RFC 5965 ARF message."""
    msg = message_from_bytes(raw, policy=policy.compat32)
    if msg.get_content_type() != "multipart/report" or not msg.is_multipart():
        raise ReportError("not a multipart/report message (RFC 3464 DSN or RFC 5965 ARF)")
    report_type = (msg.get_param("report-type") or "").lower()
    parts = [p for p in msg.get_payload() if isinstance(p, Message)]
    ledger_ref, message_id = _original_ids(parts)
    if report_type == "delivery-status":
        return _dsn(parts, ledger_ref, message_id)
    if report_type == "feedback-report":
        return _arf(parts, ledger_ref, message_id)
    raise ReportError(f"unsupported report-type {report_type!r}")


def _dsn(parts: list[Message], ledger_ref: str | None, message_id: str | None) -> list[Feedback]:
    status_part = next(
        (p for p in parts if p.get_content_type() == "message/delivery-status"), None
    )
    if status_part is None:
        raise ReportError("delivery-status report without a message/delivery-status part")
    out = []
    for block in _field_blocks(status_part)[1:]:  # the first block is per-message
        action = (block.get("Action") or "").strip().lower()
        match = _STATUS.match(block.get("Status") or "")
        if action not in ("failed", "delayed") or not match or match.group(1) == "2":
            continue
        recipient = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
        out.append(Feedback(
            kind="bounce",
            recipient=recipient,
            permanent=action == "failed" and match.group(1) == "5",
            status=".".join(match.groups()),
            diagnostic=_text(_unfold(block.get("Diagnostic-Code"))),
            ledger_ref=ledger_ref,
            message_id=message_id,
        ))
    return out


def _arf(parts: list[Message], ledger_ref: str | None, message_id: str | None) -> list[Feedback]:
    report = next(
        (p for p in parts if p.get_content_type() == "message/feedback-report"), None
    )
    if report is None:
        raise ReportError("feedback-report without a message/feedback-report part")
    blocks = _field_blocks(report)
    fields = blocks[0] if blocks else Message()
    feedback_type = (fields.get("Feedback-Type") or "").strip().lower()
    if feedback_type not in ("abuse", "fraud", "virus"):
        return []  # not-spam, opt-out reports and the like change nothing here
    recipient = _address(fields.get("Original-Rcpt-To")) or _original_recipient(parts)
    return [Feedback(
        kind="complaint", recipient=recipient, permanent=True, status=None,
        diagnostic=f"feedback-type: {feedback_type}", ledger_ref=ledger_ref,
        message_id=message_id,
    )]


def _field_blocks(part: Message) -> list[Message]:
    """Header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = payload if isinstance(payload, str) else ""
    chunks = re.split(r"\r?\n\s*\r?\n", text.strip())
    return [HeaderParser().parsestr(chunk) for chunk in chunks if chunk.strip()]


def _original_headers(parts: list[Message]) -> Message | None:
    for part in parts:
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        if kind in ("text/rfc822-headers", "text/global-headers"):
            text = part.get_payload(decode=True) or b""
            return HeaderParser().parsestr(text.decode("utf-8", "replace"))
    return None


def _original_ids(parts: list[Message]) -> tuple[str | None, str | None]:
    original = _original_headers(parts)
    if original is None:
        return None, None
    return _text(original.get("X-Reach-Message")), _text(original.get("Message-ID"))


def _original_recipient(parts: list[Message]) -> str | None:
    original = _original_headers(parts)
    return _address(original.get("To")) if original is not None else None


def _address(value: str | None) -> str | None:
    """The address of ``rfc822; ann@example.com`` or ``<ann@example.com>``."""
    if not value:
        return None
    value = str(value)
    if ";" in value:
        value = value.split(";", 1)[1]
    address = parseaddr(value.strip())[1] or value.strip().strip("<>")
    return address.lower() if "@" in address else None


def _unfold(value: str | None) -> str | None:
    return re.sub(r"\s*\r?\n\s+", " ", str(value)) if value else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:1000] or None
