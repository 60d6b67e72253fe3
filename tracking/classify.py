"""Human or machine: every open and click is stored with a verdict and the reason for it.

Nothing is dropped; reports, branches and A/B metrics count human engagement by default and
show the totals beside it. Two kinds of signal:

* request-time, decided in the route from the request alone or a small per-process memory
  of recent clicks (:class:`Classifier`): a HEAD request, a known scanner or bot user agent,
  no user agent at all, the honeypot link, every link of a message clicked within seconds;
* flush-time, decided when a batch is written and the message's ``sent_at`` is at hand
  (:func:`timing_reason`): an open within seconds of the send (privacy-proxy prefetch, Apple
  Mail Privacy Protection fetches every image at delivery) and a click soon after the send
  with no open seen for the message (link scanners follow links on arrival, before anyone
  could have read the mail).

Thresholds, and why:

* ``OPEN_PREFETCH_SECONDS = 5``: delivery alone takes a second or two and a person then has
  to notice and open the mail; proxies fetch on arrival.
* ``CLICK_SCAN_SECONDS = 60``: a click within a minute of the send with no open recorded is
  a scanner (Safe Links, Proofpoint, Mimecast); a person clicking with images blocked a
  minute later is human. A bare "click without an open" rule would flag every reader who
  blocks images, so the window is what makes it a scanner signal.
* ``BURST_SECONDS = 5`` / ``BURST_LINKS = 3``: three different links of one message within
  five seconds is a scanner walking the links; a person reads between clicks.

Gmail's and Yahoo's image proxies fetch when the reader opens the mail (and hide the
reader's address), so their user agents alone are not a machine signal: their early
fetches are caught by the prefetch window like any other.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta

# The honeypot target: a renderer may add a hidden link to it; only machines follow it.
HONEYPOT_URL = "https://honeypot.reach.invalid/"

OPEN_PREFETCH_SECONDS = 5.0
CLICK_SCAN_SECONDS = 60.0
BURST_SECONDS = 5.0
BURST_LINKS = 3
MAX_USER_AGENT = 512

# Lower-cased user-agent substrings of link scanners, link previewers and crawlers, with
# the reason stored. Checked in order; the first match wins.
MACHINE_USER_AGENTS: tuple[tuple[str, str], ...] = (
    ("barracuda", "ua:barracuda"),
    ("proofpoint", "ua:proofpoint"),
    ("mimecast", "ua:mimecast"),
    ("safelinks", "ua:safelinks"),
    ("microsoft office", "ua:ms_office_preview"),
    ("ms-office", "ua:ms_office_preview"),
    ("skypeuripreview", "ua:ms_office_preview"),
    ("symantec", "ua:symantec"),
    ("forcepoint", "ua:forcepoint"),
    ("trendmicro", "ua:trendmicro"),
    ("fireeye", "ua:fireeye"),
    ("sophos", "ua:sophos"),
    ("cisco", "ua:cisco"),
    ("slackbot", "ua:preview_bot"),
    ("twitterbot", "ua:preview_bot"),
    ("facebookexternalhit", "ua:preview_bot"),
    ("linkedinbot", "ua:preview_bot"),
    ("whatsapp", "ua:preview_bot"),
    ("headlesschrome", "ua:headless"),
    ("python-requests", "ua:http_library"),
    ("python-httpx", "ua:http_library"),
    ("python-urllib", "ua:http_library"),
    ("aiohttp", "ua:http_library"),
    ("go-http-client", "ua:http_library"),
    ("okhttp", "ua:http_library"),
    ("curl/", "ua:http_library"),
    ("wget", "ua:http_library"),
    ("java/", "ua:http_library"),
    ("libwww", "ua:http_library"),
    ("bot", "ua:bot"),
    ("crawler", "ua:bot"),
    ("spider", "ua:bot"),
    ("scanner", "ua:scanner"),
    ("preview", "ua:preview_bot"),
)


def clean_user_agent(value: str | None) -> str | None:
    """The user agent as stored: capped in length, control characters removed."""
    if not value:
        return None
    value = value[:MAX_USER_AGENT]
    if not value.isprintable():
        value = "".join(ch if ch.isprintable() else " " for ch in value)
    return value


def request_reason(method: str, user_agent: str | None) -> str | None:
    """The machine reason visible from the request alone, or None for a human-looking one."""
    if method == "HEAD":
        return "head_request"
    if not user_agent:
        return "no_user_agent"
    lowered = user_agent.lower()
    for needle, reason in MACHINE_USER_AGENTS:
        if needle in lowered:
            return reason
    return None


def timing_reason(
    kind: str,
    occurred_at: datetime,
    sent_at: datetime | None,
    *,
    opened: bool,
) -> str | None:
    """The machine reason from timing against the send, decided when the batch is written.

    ``opened`` says whether an open of the message is known (earlier in the batch or stored).
    """
    if sent_at is None:
        return None
    elapsed = (occurred_at - sent_at).total_seconds()
    if kind == "open" and elapsed < OPEN_PREFETCH_SECONDS:
        return "open_prefetch"
    if kind == "click" and not opened and elapsed < CLICK_SCAN_SECONDS:
        return "click_before_open"
    return None


class Classifier:
    """Per-process memory of recent clicks per message, to spot link bursts.

    A bounded LRU: only the last few seconds of clicks matter, so losing an old entry
    costs nothing. Each process of ``reach serve --workers N`` keeps its own; a burst
    split across workers is then caught less often, which errs toward "human".
    """

    def __init__(self, max_messages: int = 50_000) -> None:
        self._recent: OrderedDict[int, list[tuple[datetime, str]]] = OrderedDict()
        self._max = max_messages

    def click_reason(self, message_id: int, url: str, at: datetime) -> tuple[str | None, bool]:
        """The burst verdict for a click, and whether it completes a burst just now.

        When it does, the earlier clicks of the burst (stored as human) should be
        reclassified too; the caller queues that update.
        """
        horizon = at - timedelta(seconds=BURST_SECONDS)
        clicks = [(t, u) for t, u in self._recent.pop(message_id, []) if t >= horizon]
        clicks.append((at, url))
        self._recent[message_id] = clicks[-32:]
        if len(self._recent) > self._max:
            self._recent.popitem(last=False)
        distinct = {u for _, u in clicks}
        if len(distinct) >= BURST_LINKS:
            first = len({u for _, u in clicks[:-1]}) < BURST_LINKS
            return "link_burst", first
        return None, False

    def burst_start(self, message_id: int) -> datetime | None:
        """When the current burst of a message began (oldest remembered click)."""
        clicks = self._recent.get(message_id)
        return clicks[0][0] if clicks else None
