"""Click tracking compiled into the template, once per template.

Each ``<a href="http(s)://…">`` of the compiled HTML becomes ``{{ _c }}URLTOKEN``: the URL
token (an HMAC sealing the target) is computed here, once per distinct link, and ``_c`` is
``{base}/c/{message token}/`` — one HMAC per message whatever the number of links. A link
whose href holds Jinja (a personalised URL) is wrapped in ``{% filter reach_track %}`` so its
token is computed per render, from the URL as rendered (memoised: most contacts share URLs).

Left alone: ``mailto:``, ``tel:``, ``#anchors``, relative links, the unsubscribe and
view-in-browser links, and links marked ``data-reach-notrack`` (the marker is removed).
"""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass, field

from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape

from templating.jinja import html_env, text_env
from templating.mjml import Protected
from tracking.tokens import Signer

_A_TAG = re.compile(r"<a\b[^>]*>", re.I)
_HREF = re.compile(r"""(\shref\s*=\s*)(["'])(.*?)\2""", re.I | re.S)
_NOTRACK = re.compile(
    r"""\s+data-reach-notrack(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>"']+))?(?=[\s/>])""", re.I
)
_OWN_URLS = ("unsubscribe_url", "view_in_browser_url")
_HTTP = ("http://", "https://")
CLICK_PREFIX = "_c"  # context variable: "{base}/c/{message token}/"


@dataclass
class LinkReport:
    """What rewriting did, for tests and `reach preview`."""

    static: dict[str, str] = field(default_factory=dict)  # target URL -> URL token
    dynamic: int = 0
    untouched: int = 0


def rewrite_links(text: str, protected: Protected, signer: Signer,
                  tracking_base_url: str) -> tuple[str, LinkReport]:
    """Rewrite the ``<a>`` tags of a protected HTML (placeholders for Jinja) for tracking."""
    report = LinkReport()
    pattern = protected.pattern()
    click = protected.add("{{ " + CLICK_PREFIX + " }}")
    base = tracking_base_url.rstrip("/")

    def one_tag(match: re.Match[str]) -> str:
        tag = match.group(0)
        if _NOTRACK.search(tag):
            report.untouched += 1
            return _NOTRACK.sub("", tag)
        href = _HREF.search(tag)
        if href is None:
            return tag
        value = href.group(3)
        new_value = _rewrite_value(value)
        if new_value is None:
            report.untouched += 1
            return tag
        return tag[:href.start(3)] + new_value + tag[href.end(3):]

    def _rewrite_value(value: str) -> str | None:
        holders = list(pattern.finditer(value))
        if not holders:
            url = htmllib.unescape(value).strip()
            if not url.lower().startswith(_HTTP) or url.startswith(base + "/"):
                return None
            token = report.static.get(url)
            if token is None:
                token = report.static[url] = signer.url_token(url)
            return click + token
        constructs = [protected.constructs[int(m.group(1))] for m in holders]
        if any(own in c for c in constructs for own in _OWN_URLS):
            return None
        prefix = htmllib.unescape(value[:holders[0].start()]).strip().lower()
        # "mailto:{{ x }}", "#{{ id }}", "/path/{{ x }}": not an absolute http(s) link.
        if prefix and not (prefix.startswith(_HTTP) or "https://".startswith(prefix)
                           or "http://".startswith(prefix)):
            return None
        report.dynamic += 1
        return (protected.add("{% filter reach_track %}") + value
                + protected.add("{% endfilter %}"))

    return _A_TAG.sub(one_tag, text), report


class Tracker:
    """Per template: turns a rendered personalised URL into its signed click URL."""

    def __init__(self, signer: Signer, *, html: bool) -> None:
        self._signer = signer
        self._html = html
        self._memo: dict[str, str] = {}

    def __call__(self, value: str, click_prefix: str) -> str:
        url = (htmllib.unescape(str(value)) if self._html else str(value)).strip()
        if not url.lower().startswith(_HTTP):
            return value  # rendered to mailto:/relative: leave as the template wrote it
        token = self._memo.get(url)
        if token is None:
            if len(self._memo) > 50_000:  # bound memory when every contact has its own URL
                self._memo.clear()
            token = self._memo[url] = self._signer.url_token(url)
        target = click_prefix + token
        return Markup(escape(target)) if self._html else target


TRACKER = "_t"  # context variable holding the template's Tracker


@pass_context
def reach_track(ctx: Context, value: str) -> str:
    """Jinja filter: delegate to the Tracker of the template being rendered."""
    tracker = ctx.get(TRACKER)
    if tracker is None:  # rendered outside EmailTemplate (e.g. a bare preview): no tracking
        return value
    return tracker(value, str(ctx.get(CLICK_PREFIX, "")))


html_env.filters["reach_track"] = reach_track
text_env.filters["reach_track"] = reach_track
