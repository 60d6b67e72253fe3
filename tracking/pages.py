"""The few HTML pages the tracking server shows to people.

Small, accessible and mobile-friendly: a language, a viewport, real headings, a form that
works without JavaScript, a large button with a visible focus ring, contrast above WCAG AA.
Every value shown is escaped; the pages load nothing from elsewhere.
"""

from __future__ import annotations

from html import escape

_STYLE = """
:root{color-scheme:light dark}
body{font:1.0625rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
padding:1.5rem;background:#f6f7f9;color:#1b1f24}
main{max-width:32rem;margin:2rem auto;background:#fff;border-radius:.75rem;padding:1.75rem;
box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 1rem}
p,form{margin:0 0 1rem}
.address{font-weight:600;overflow-wrap:anywhere}
button{font:inherit;font-weight:600;min-height:2.75rem;width:100%;padding:.75rem 1rem;
border:0;border-radius:.5rem;background:#0b57d0;color:#fff;cursor:pointer}
button:hover{background:#0842a0}
button:focus-visible{outline:3px solid #f29900;outline-offset:2px}
.small{font-size:.9375rem;color:#4a5058}
@media (prefers-color-scheme:dark){body{background:#14171a;color:#e8eaed}
main{background:#1f2327}.small{color:#b5bac1}button{background:#8ab4f8;color:#0b1a33}}
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta name=\"robots\" content=\"noindex, nofollow\">\n"
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def unsubscribe_form(address: str | None, channel: str, action: str) -> str:
    """The confirmation page: which address, and one button that POSTs to ``action``."""
    what = "text messages" if channel == "sms" else "marketing emails"
    who = (
        f'<p>You are about to stop {what} to <span class="address">{escape(address)}</span>.</p>'
        if address else f"<p>You are about to stop {what} from us.</p>"
    )
    body = (
        "<h1 id=\"title\">Unsubscribe</h1>\n"
        f"{who}\n"
        f'<form method="post" action="{escape(action)}" aria-labelledby="title">\n'
        '<input type="hidden" name="confirm" value="yes">\n'
        '<button type="submit">Unsubscribe</button>\n</form>\n'
        '<p class="small">You can subscribe again at any time. '
        "Messages already on their way may still arrive for a short while.</p>"
    )
    return _page("Unsubscribe", body)


def unsubscribed(address: str | None, channel: str, changed: bool) -> str:
    """The page shown after the unsubscribe POST."""
    what = "text messages" if channel == "sms" else "marketing emails"
    target = f' to <span class="address">{escape(address)}</span>' if address else ""
    note = "" if changed else "<p class=\"small\">You were already unsubscribed.</p>"
    body = (
        "<h1 role=\"status\">You are unsubscribed</h1>\n"
        f"<p>We will no longer send {what}{target}.</p>\n{note}"
    )
    return _page("Unsubscribed", body)


def error_page(title: str, message: str) -> str:
    """A plain error page (bad or expired link, message not found, database down)."""
    return _page(title, f"<h1>{escape(title)}</h1>\n<p>{escape(message)}</p>")


def view_page_missing() -> str:
    """The page for a message that cannot be shown in the browser."""
    return error_page(
        "Message not available",
        "This message can no longer be shown in the browser. It may have been removed.",
    )
