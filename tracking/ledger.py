"""Synchronous writes that must not wait in the queue: consent and provider feedback.

Unsubscribes, bounces, complaints and SMS callbacks are rare, and each one changes what
may be sent next, so they are written at once, in one transaction each, and the caller
learns whether it worked (a provider retries a callback that got a 5xx). These functions
run in a worker thread; every query is parameterised.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import phonenumbers
from sqlalchemy import Connection, Engine, func, insert, or_, select, update

from audiences.consent import set_status
from reach import clock
from reach.db.schema import SUBSCRIBED, contacts, engagements, events, messages
from tracking.bounces import Feedback
from tracking.tokens import BadToken, Signer

SMS_STOP = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
SMS_START = frozenset({"START", "YES", "UNSTOP"})
SMS_HELP = frozenset({"HELP", "INFO"})
TWILIO_OPTED_OUT = "21610"  # "Attempt to send to unsubscribed recipient": they replied STOP


@dataclass(frozen=True)
class Recipient:
    """Who a message went to, as the unsubscribe page needs it."""

    message_id: int
    contact_id: int
    channel: str  # the consent channel: email or sms
    address: str | None


def find_recipient(engine: Engine, message_id: int) -> Recipient | None:
    """The contact and address of a message, or None if the message is gone."""
    with engine.connect() as conn:
        return _recipient(conn, message_id)


def _recipient(conn: Connection, message_id: int) -> Recipient | None:
    row = conn.execute(
        select(messages.c.contact_id, messages.c.channel, messages.c.to_address,
               contacts.c.email, contacts.c.phone)
        .join(contacts, contacts.c.id == messages.c.contact_id)
        .where(messages.c.id == message_id)
    ).first()
    if row is None:
        return None
    channel = "sms" if row.channel == "sms" else "email"
    address = row.to_address or (row.phone if channel == "sms" else row.email)
    return Recipient(message_id, row.contact_id, channel, address)


def unsubscribe(
    engine: Engine, message_id: int, *, one_click: bool, user_agent: str | None, ip: str | None
) -> tuple[Recipient | None, bool]:
    """Unsubscribe the recipient of a message from its channel; (recipient, changed)."""
    with engine.begin() as conn:
        who = _recipient(conn, message_id)
        if who is None:
            return None, False
        current = conn.execute(
            select(contacts.c.email_status if who.channel == "email" else contacts.c.sms_status)
            .where(contacts.c.id == who.contact_id)
        ).scalar()
        # A bounced or complained address stays so: it is suppressed already, and its
        # status says more than "unsubscribed" would.
        if current != SUBSCRIBED:
            return who, False
        set_status(conn, who.contact_id, who.channel, "unsubscribed",
                   source="one_click" if one_click else "unsubscribe_link",
                   message_id=message_id)
        _engagement(conn, message_id, who.contact_id, "unsubscribe",
                    user_agent=user_agent, ip=ip)
        return who, True


def _engagement(conn: Connection, message_id: int, contact_id: int, kind: str,
                **extra: Any) -> None:
    conn.execute(insert(engagements).values(
        message_id=message_id, contact_id=contact_id, kind=kind, occurred_at=clock.now(),
        machine=False, **extra,
    ))


def _has_engagement(conn: Connection, message_id: int, kind: str) -> bool:
    return conn.execute(
        select(engagements.c.id).where(
            engagements.c.message_id == message_id, engagements.c.kind == kind
        ).limit(1)
    ).first() is not None


# Bounces and complaints ------------------------------------------------------------------

def _match_message(conn: Connection, signer: Signer, fb: Feedback) -> tuple[int, int] | None:
    """(message id, contact id) of the message a report is about, or None."""
    ref = (fb.ledger_ref or "").strip()
    candidates: list[int] = []
    if ref.isdigit():
        candidates.append(int(ref))
    elif ref:
        with contextlib.suppress(BadToken):
            candidates.append(signer.verify_message(ref))
    for mid in candidates:
        row = conn.execute(
            select(messages.c.id, messages.c.contact_id).where(messages.c.id == mid)
        ).first()
        if row is not None:
            return row.id, row.contact_id
    if fb.message_id:
        bare = fb.message_id.strip().strip("<>")
        # Reach's own Message-IDs are <ledger id.random@domain> (templating.mime).
        head = bare.split("@", 1)[0].split(".", 1)
        if len(head) == 2 and head[0].isdigit():
            row = conn.execute(
                select(messages.c.id, messages.c.contact_id)
                .where(messages.c.id == int(head[0]))
            ).first()
            if row is not None:
                return row.id, row.contact_id
        row = conn.execute(
            select(messages.c.id, messages.c.contact_id)
            .where(messages.c.provider_id.in_([bare, f"<{bare}>"]))
            .order_by(messages.c.id.desc()).limit(1)
        ).first()
        if row is not None:
            return row.id, row.contact_id
    return None


def _contact_by_email(conn: Connection, email: str) -> int | None:
    return conn.execute(
        select(contacts.c.id)
        .where(or_(contacts.c.email == email, func.lower(contacts.c.email) == email.lower()))
        .limit(1)
    ).scalar()


def apply_feedback(engine: Engine, signer: Signer, fb: Feedback) -> dict[str, Any]:
    """Apply one bounce or complaint; returns what was matched and done."""
    with engine.begin() as conn:
        matched = _match_message(conn, signer, fb)
        message_id: int | None = None
        if matched is not None:
            message_id, contact_id = matched
        else:
            found = _contact_by_email(conn, fb.recipient) if fb.recipient else None
            if found is None:
                return {"kind": fb.kind, "matched": False}
            contact_id = found
            message_id = conn.execute(
                select(messages.c.id).where(messages.c.contact_id == contact_id,
                                            messages.c.channel == "email")
                .order_by(messages.c.id.desc()).limit(1)
            ).scalar()
        reason = " ".join(x for x in (fb.status, fb.diagnostic) if x) or None
        result: dict[str, Any] = {"kind": fb.kind, "matched": True, "message_id": message_id,
                                  "contact_id": contact_id, "permanent": fb.permanent}
        if fb.kind == "complaint":
            if message_id is not None and not _has_engagement(conn, message_id, "complaint"):
                _engagement(conn, message_id, contact_id, "complaint")
            result["status_changed"] = set_status(
                conn, contact_id, "email", "complained", source="complaint", reason=reason,
                message_id=message_id)
            return result
        if not fb.permanent:
            if message_id is not None:  # a transient failure: recorded, nothing suppressed
                _engagement(conn, message_id, contact_id, "soft_bounce", url=None,
                            machine_reason=None, user_agent=None, ip=None)
            return result
        if message_id is not None:
            changed = conn.execute(
                update(messages).where(messages.c.id == message_id,
                                       messages.c.status != "bounced")
                .values(status="bounced", last_error=reason)
            ).rowcount
            if changed:
                _engagement(conn, message_id, contact_id, "bounce")
        result["status_changed"] = set_status(
            conn, contact_id, "email", "bounced", source="bounce", reason=reason,
            message_id=message_id)
        return result


# SMS callbacks ----------------------------------------------------------------------------

def apply_sms_status(engine: Engine, sid: str, status: str, error_code: str | None
                     ) -> dict[str, Any]:
    """A Twilio status callback for the message whose provider id is ``sid``."""
    status = status.strip().lower()
    with engine.begin() as conn:
        row = conn.execute(
            select(messages.c.id, messages.c.contact_id)
            .where(messages.c.provider_id == sid).limit(1)
        ).first()
        if row is None:
            return {"matched": False}
        result: dict[str, Any] = {"matched": True, "message_id": row.id, "status": status}
        if status == "delivered":
            first = conn.execute(
                update(messages).where(messages.c.id == row.id,
                                       messages.c.delivered_at.is_(None))
                .values(delivered_at=clock.now())
            ).rowcount
            if first:  # providers repeat callbacks; one delivery is one engagement
                _engagement(conn, row.id, row.contact_id, "delivered")
        elif status in ("undelivered", "failed"):
            detail = f"twilio {status}" + (f" (error {error_code})" if error_code else "")
            conn.execute(update(messages).where(messages.c.id == row.id)
                         .values(status="failed", last_error=detail))
        if error_code == TWILIO_OPTED_OUT:
            result["unsubscribed"] = set_status(
                conn, row.contact_id, "sms", "unsubscribed", source="sms_stop",
                reason="twilio error 21610", message_id=row.id)
        return result


def e164(number: str) -> str:
    """``number`` in E.164 when it parses as a phone number, else trimmed as given."""
    number = number.strip()
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def apply_sms_inbound(engine: Engine, sid: str, sender: str, body: str) -> dict[str, Any]:
    """An inbound SMS: opt-out, opt-in and help keywords (the whole message) by sender."""
    keyword = body.strip().upper()
    if keyword not in SMS_STOP | SMS_START | SMS_HELP:
        return {"keyword": None}
    phone = e164(sender)
    now = clock.now()
    with engine.begin() as conn:
        ids = list(conn.execute(select(contacts.c.id).where(contacts.c.phone == phone)).scalars())
        changed = 0
        for contact_id in ids:
            if keyword in SMS_STOP:
                changed += set_status(conn, contact_id, "sms", "unsubscribed",
                                      source="sms_stop", reason=keyword)
            elif keyword in SMS_START:
                changed += set_status(conn, contact_id, "sms", "subscribed",
                                      source="sms_start", reason=keyword)
            key = f"twilio:{sid}:{contact_id}" if sid else None
            if key and conn.execute(select(events.c.id).where(events.c.event_key == key)).first():
                continue  # a retried callback
            conn.execute(insert(events).values(
                contact_id=contact_id, type="sms_keyword", occurred_at=now, received_at=now,
                properties={"keyword": keyword, "sid": sid}, event_key=key,
            ))
        return {"keyword": keyword, "contacts": len(ids), "changed": changed}
