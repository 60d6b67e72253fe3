"""Per-channel subscription status, with a history of who changed it, when and why.

Suppression is enforced at send time from these columns, whatever a segment says.
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, update

from reach import clock
from reach.db.schema import (
    BOUNCED,
    COMPLAINED,
    SUBSCRIBED,
    UNSUBSCRIBED,
    consent_changes,
    contacts,
)

STATUSES = (SUBSCRIBED, UNSUBSCRIBED, BOUNCED, COMPLAINED)
CHANNELS = ("email", "sms")


def status_column(channel: str):  # type: ignore[no-untyped-def]
    """The contacts column holding ``channel``'s status."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    return contacts.c.email_status if channel == "email" else contacts.c.sms_status


def set_status(
    conn: Connection,
    contact_id: int,
    channel: str,
    status: str,
    *,
    source: str,
    reason: str | None = None,
    message_id: int | None = None,
) -> bool:
    """Change one contact's status on one channel; returns False if it was already so."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    column = status_column(channel)
    at = clock.now()
    changed = conn.execute(
        update(contacts)
        .where(contacts.c.id == contact_id, column != status)
        .values({column.name: status, "updated_at": at})
    ).rowcount
    if changed:
        conn.execute(
            insert(consent_changes).values(
                contact_id=contact_id, channel=channel, status=status, source=source,
                reason=reason, message_id=message_id, changed_at=at,
            )
        )
    return bool(changed)


def is_sendable(conn: Connection, contact_id: int, channel: str) -> bool:
    """Whether the contact may be sent to on ``channel`` right now."""
    from sqlalchemy import select

    column = status_column(channel)
    value = conn.execute(
        select(column).where(contacts.c.id == contact_id, contacts.c.erased_at.is_(None))
    ).scalar()
    return value == SUBSCRIBED
