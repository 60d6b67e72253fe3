"""When a step may happen: time zones, quiet hours, ``wait until`` and frequency caps.

All pure functions over aware datetimes, except :func:`cap_free_at`, which counts the
contact's messages of a channel in the cap's window across every journey and campaign.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, func, select

from journeys.spec import parse_cap, parse_clock
from reach import clock
from reach.db.bulk import among
from reach.db.schema import messages

UTC_ZONE = ZoneInfo("UTC")


@lru_cache(maxsize=512)
def zone(name: str | None) -> ZoneInfo | None:
    """A ZoneInfo for an IANA name, or None when the name is missing or unknown."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def contact_zone(setting: str, contact_tz: str | None) -> ZoneInfo:
    """The zone a contact's local times are read in: ``settings.timezone`` is ``contact``
    (the contact's ``timezone``, else UTC) or one IANA name for everybody."""
    if setting == "contact":
        return zone(contact_tz) or UTC_ZONE
    return zone(setting) or UTC_ZONE


def next_local_time(now: datetime, hhmm: str, tz: ZoneInfo) -> datetime:
    """The first ``hhmm`` in ``tz`` strictly after ``now`` (UTC result)."""
    hm = parse_clock(hhmm)
    local = now.astimezone(tz)
    candidate = datetime.combine(local.date(), time(*hm), tzinfo=tz)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), time(*hm), tzinfo=tz)
    return clock.as_utc(candidate)  # type: ignore[return-value]


def quiet_until(now: datetime, quiet_hours: str | None, tz: ZoneInfo) -> datetime | None:
    """When the quiet window around ``now`` ends, or None if ``now`` is outside it.

    ``21:00-08:00`` wraps midnight; ``12:00-14:00`` does not. The end is exclusive.
    """
    if not quiet_hours:
        return None
    start_s, _, end_s = quiet_hours.partition("-")
    start, end = parse_clock(start_s), parse_clock(end_s)
    local = now.astimezone(tz)
    minute = local.hour * 60 + local.minute
    lo, hi = start[0] * 60 + start[1], end[0] * 60 + end[1]
    inside = lo <= minute < hi if lo < hi else (minute >= lo or minute < hi)
    if not inside:
        return None
    return next_local_time(now, end_s, tz)


def caps(settings: Mapping[str, Any]) -> dict[str, tuple[int, timedelta]]:
    """``{email: "3 per 7d"}`` -> ``{email: (3, 7 days)}``."""
    out = {}
    for channel, text in (settings.get("frequency_cap") or {}).items():
        n, window = parse_cap(text)
        out[channel] = (n, clock.parse_duration(window))
    return out


def cap_free_at(conn: Connection, channel: str, contact_ids: Iterable[int], limit: int,
                window: timedelta, now: datetime) -> dict[int, datetime]:
    """Contacts at their cap on ``channel``, with the time a message may go again.

    Counts every message of the channel to the contact in the window, from any journey or
    campaign (test sends excluded); queued ones count too, so two message steps in one tick
    cannot slip past the cap together.
    """
    ids = list(contact_ids)
    if not ids:
        return {}
    at = func.coalesce(messages.c.sent_at, messages.c.created_at)
    rows = conn.execute(
        select(messages.c.contact_id, at.label("at"))
        .where(among(conn, messages.c.contact_id, ids), messages.c.channel == channel,
               messages.c.status.in_(["queued", "sending", "sent", "unknown"]),
               messages.c.source_kind != "test", at > now - window, at <= now)
    ).all()
    times: dict[int, list[datetime]] = {}
    for cid, t in rows:
        times.setdefault(cid, []).append(clock.as_utc(t))  # type: ignore[arg-type]
    out = {}
    for cid, ts in times.items():
        if len(ts) >= limit:
            ts.sort()
            # The cap frees when enough of the oldest messages have left the window.
            out[cid] = ts[len(ts) - limit] + window
    return out
