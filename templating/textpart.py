"""The plain-text part, generated from the HTML with its links listed at the end.

Generated once per template from the *protected* HTML (Jinja swapped for placeholders), so
the result is itself a Jinja template rendered per contact: html2text runs at load, never per
message. ``html_to_text`` is the per-message fallback for templates whose Jinja blocks do not
survive the conversion (e.g. an ``{% if %}`` opened inside a ``<style>``).
"""

from __future__ import annotations

import re

import html2text

# Hidden blocks (MJML's mj-preview, our preheader) must not show up in the text part.
_HIDDEN = re.compile(
    r"<div[^>]*style=\"[^\"]*display\s*:\s*none[^\"]*\"[^>]*>[^<]*</div>", re.I
)
_HEAD = re.compile(r"<head\b.*?</head>", re.I | re.S)
_CELL_END = re.compile(r"</t([dh])>", re.I)
_HARD_BREAK = re.compile(r"[ \t]+\n")
_BLANKS = re.compile(r"\n{3,}")


def _converter() -> html2text.HTML2Text:
    conv = html2text.HTML2Text()
    conv.body_width = 0  # no wrapping: a wrapped line could split a Jinja construct
    conv.inline_links = False  # links listed at the end as [n]: url
    conv.links_each_paragraph = False
    conv.ignore_images = False
    conv.images_to_alt = True
    conv.default_image_alt = ""
    conv.ignore_tables = True  # MJML lays out with tables; they are not data
    conv.ignore_emphasis = True
    conv.unicode_snob = True
    conv.single_line_break = False
    return conv


def html_to_text(html: str) -> str:
    """Readable text of an HTML email: paragraphs, lists, and numbered links at the end."""
    html = _HEAD.sub("", html)
    html = _HIDDEN.sub("", html)
    html = _CELL_END.sub(r" </t\1>", html)  # cells of one row must not run together
    text = _converter().handle(html)
    text = _HARD_BREAK.sub("\n", text)
    text = _BLANKS.sub("\n\n", text)
    return text.strip() + "\n"
