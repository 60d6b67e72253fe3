"""SMS bodies: Jinja2 text, GSM-7 / UCS-2 detection and segment counting per 3GPP TS 23.038.

GSM-7: the basic table costs one septet per character, the extension table (reached through
an escape) two. Any other character makes the whole message UCS-2, counted in UTF-16 code
units (an emoji is a surrogate pair: two). One part holds 160 septets / 70 units; once a
message is split every part holds 153 / 67 (the rest is the concatenation header). An escape
pair or a surrogate pair is never split across parts, so segments are counted by packing
characters into parts, not by dividing the total.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jinja2 import Template, UndefinedError
from jinja2 import TemplateError as JinjaError

from reach.errors import Diagnostic
from reach.settings import Settings
from templating.errors import TemplateError
from templating.jinja import compile_template, error_line, undefined_name

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
_LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}
_STOP = re.compile(r"\bstop\b", re.I)


@dataclass(frozen=True)
class SmsMeasure:
    """Encoding, size in septets (GSM-7) or UTF-16 units (UCS-2), and parts."""

    encoding: Literal["GSM-7", "UCS-2"]
    units: int
    segments: int


def non_gsm_chars(text: str) -> list[str]:
    """The distinct characters that force UCS-2, in order of appearance."""
    seen: dict[str, None] = {}
    for char in text:
        if char not in GSM7_BASIC and char not in GSM7_EXTENSION:
            seen[char] = None
    return list(seen)


def measure(text: str) -> SmsMeasure:
    """Encoding, units and segment count of an SMS body, exactly per 3GPP TS 23.038."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        encoding: Literal["GSM-7", "UCS-2"] = "GSM-7"
        costs = [2 if c in GSM7_EXTENSION else 1 for c in text]
    else:
        encoding = "UCS-2"
        costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
    units = sum(costs)
    single, part = _LIMITS[encoding]
    if units <= single:
        return SmsMeasure(encoding, units, 1)
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:  # the pair would straddle the boundary: it opens a new part
            segments += 1
            used = 0
        used += cost
    return SmsMeasure(encoding, units, segments)


@dataclass(frozen=True)
class RenderedSms:
    """One personalised SMS body and its measure."""

    body: str
    measure: SmsMeasure


class SmsTemplate:
    """An SMS body template; create with :meth:`load`."""

    def __init__(self, *, name: str, template: Template, file: str, settings: Settings,
                 stop_text: str | None) -> None:
        self.name = name
        self._template = template
        self._file = file
        self._settings = settings
        self._stop_text = stop_text

    @classmethod
    def load(cls, *, name: str, body: str | None, path: Path | None, settings: Settings,
             stop_text: str | None = "Reply STOP to opt out.") -> SmsTemplate:
        """Compile a body given inline or as a ``.sms`` file; syntax errors raise T301."""
        if (body is None) == (path is None):
            raise TemplateError("T301", f"SMS template {name!r} needs exactly one of a body "
                                "or a file", name)
        if path is not None:
            try:
                body = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise TemplateError("R201", f"SMS template not found: {path}", str(path),
                                    hint="check the template path") from exc
            body = body.rstrip("\n")  # the newline ending a file is not part of the message
        file = str(path) if path is not None else name
        template = compile_template(body or "", name=file, html=False)
        return cls(name=name, template=template, file=file, settings=settings,
                   stop_text=stop_text)

    def render(self, contact: Mapping[str, Any], *, context: Mapping[str, Any]) -> RenderedSms:
        """The body for one contact (STOP text appended if missing) and its measure."""
        ctx = dict(context)
        ctx["contact"] = contact
        try:
            text = self._template.render(ctx).strip()
        except UndefinedError as exc:
            name = undefined_name(exc)
            raise TemplateError(
                "T302", f"missing value: {exc.message}", self._file,
                error_line(exc, self._file),
                f"give the contact a value for {name!r} or use | default('')") from exc
        except (JinjaError, ArithmeticError, ValueError, TypeError, LookupError) as exc:
            raise TemplateError("T302", f"SMS does not render: {exc}", self._file,
                                error_line(exc, self._file)) from exc
        if self._stop_text and not _STOP.search(text):
            text = f"{text} {self._stop_text}" if text else self._stop_text
        return RenderedSms(text, measure(text))

    def check(self, contacts: list[Mapping[str, Any]],
              context: Mapping[str, Any]) -> list[Diagnostic]:
        """Render against sample contacts: T302 for render errors, T303 when too long."""
        found: dict[tuple[str, str | None, int | None], Diagnostic] = {}
        limit = self._settings.max_sms_segments
        for index, contact in enumerate(contacts):
            who = contact.get("phone") or contact.get("email") or f"sample contact #{index + 1}"
            try:
                sms = self.render(contact, context=context)
            except TemplateError as exc:
                found.setdefault((exc.code, exc.message, exc.line), Diagnostic(
                    code=exc.code, message=f"{exc.message} (for {who})", file=exc.file,
                    line=exc.line, hint=exc.hint))
                continue
            if sms.measure.segments > limit:
                found.setdefault(("T303", None, None), _too_long(self._file, sms, limit, who))
        return list(found.values())


def _too_long(file: str, sms: RenderedSms, limit: int, who: str) -> Diagnostic:
    m = sms.measure
    hint = f"shorten the text to {limit} segment(s) or raise max_sms_segments"
    culprits = non_gsm_chars(sms.body)
    if culprits:
        shown = " ".join(repr(c) for c in culprits[:8])
        hint += f"; {shown} force UCS-2 (70/67 per part) — replacing them allows GSM-7"
    return Diagnostic(
        code="T303",
        message=f"SMS is {m.segments} segments ({m.encoding}, {m.units} units) for {who}; "
                f"the limit is {limit}",
        file=file, line=1, hint=hint)
