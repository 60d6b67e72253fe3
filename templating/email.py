"""Email templates: compile once at load, personalise per contact in microseconds.

``EmailTemplate.load`` does all the expensive work once per template: MJML → HTML (cached by
content hash), click tracking compiled into the HTML (one URL token per static link), the
unsubscribe footer and open pixel, the text part derived from the HTML, every Jinja template
compiled, and the MIME skeleton encoded. ``render`` then costs one HMAC (the message token),
three Jinja renders and two base64 encodings per contact.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Template, UndefinedError
from jinja2 import TemplateError as JinjaError
from markupsafe import Markup

from reach import clock
from reach.errors import Diagnostic, ReachError
from reach.settings import Settings
from templating import dkimsign
from templating.errors import TemplateError
from templating.jinja import check_syntax, compile_template, error_line, undefined_name
from templating.links import CLICK_PREFIX, TRACKER, LinkReport, Tracker, rewrite_links
from templating.mime import MimeSkeleton, clean, format_address, parse_from, wire_clean_headers
from templating.mjml import Protected, compile_protected, protect_jinja
from templating.textpart import html_to_text
from tracking.tokens import Signer, unsubscribe_path, view_path

_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.I)
_BODY_CLOSE = re.compile(r"</body\s*>", re.I)
_PREHEADER = (
    '<div style="display:none;font-size:1px;color:#ffffff;line-height:1px;max-height:0px;'
    'max-width:0px;opacity:0;overflow:hidden;mso-hide:all;">{text}'
    + "&#847;&zwnj;&nbsp;" * 20 + "</div>"
)


@dataclass(frozen=True)
class RenderedEmail:
    """One personalised message, ready for a messenger."""

    to: str
    subject: str
    message_id_header: str
    raw: bytes
    html: str
    text: str
    # CRLF line ends throughout and no line starting with '.': SMTP may send it as is.
    wire_clean: bool = False


@dataclass(frozen=True)
class _Part:
    template: Template
    name: str  # file name errors are reported against
    lines: dict[int, list[int]] | None  # rendered-source line -> construct indices
    protected: Protected | None


class EmailTemplate:
    """A loaded email template; create with :meth:`load`."""

    def __init__(self) -> None:  # use load()
        self.name = ""
        self.links = LinkReport()

    @classmethod
    def load(cls, path: Path, *, name: str, subject: str, from_addr: str,
             preheader: str | None, settings: Settings, text_path: Path | None = None,
             reply_to: str | None = None, dkim_selector: str | None = None,
             dkim_domain: str | None = None, dkim_private_key_path: Path | None = None,
             cache_dir: Path | None = None) -> EmailTemplate:
        """Compile everything that does not depend on the contact.

        ``path`` is an ``.mjml`` file (or ``.html``, used as is). Raises :class:`TemplateError`
        ``T301`` naming the file and line of an MJML or Jinja syntax error.
        """
        self = cls()
        self.name = name
        self.path = path
        file = str(path)
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateError("R201", f"template not found: {path}", file,
                                hint="check the template path") from exc
        self._settings = settings
        if not settings.signing_keys:
            raise ReachError("C601", "secret_key is not set: tracking links cannot be signed",
                             "run `reach init` or set REACH_SECRET_KEY")
        self._signer = Signer(settings.signing_keys)
        self._base = settings.tracking_base_url.rstrip("/")
        # Jinja syntax first, on the marketer's own file: its line numbers are the right ones.
        check_syntax(source, name=file, html=True)
        protected = protect_jinja(source)
        if path.suffix.lower() == ".mjml":
            body = compile_protected(protected, name=file, source=source, cache_dir=cache_dir)
        else:
            body = protected.text
        body, self.links = rewrite_links(body, protected, self._signer, self._base)
        if "unsubscribe_url" not in source:
            body = _insert_before_body_end(body, self._footer(protected))
        self._html_only = body  # protected, before preheader/pixel: the text part's source
        body = _BODY_OPEN.sub(lambda m: m.group(0) + protected.add("{{ _preheader }}"),
                              body, count=1) if _BODY_OPEN.search(body) else \
            protected.add("{{ _preheader }}") + body
        pixel = protected.add(
            '{% if _pixel %}<img src="' + self._base + '/o/{{ _m }}.gif" width="1" height="1" '
            'alt="" style="display:none">{% endif %}'
        )
        body = _insert_before_body_end(body, pixel)
        html_source, lines = protected.restore_with_lines(body)
        self._html = _Part(compile_template(html_source, name=file + "#html", html=True),
                           file, lines, protected)
        self._text = self._load_text(text_path, protected)
        self._subject = _Part(compile_template(subject, name=f"{file}#subject", html=False),
                              f"{file} (subject)", None, None)
        self._preheader = None if not preheader else _Part(
            compile_template(preheader, name=f"{file}#preheader", html=True),
            f"{file} (preheader)", None, None)
        self._html_tracker = Tracker(self._signer, html=True)
        self._text_tracker = Tracker(self._signer, html=False)
        from_name, from_address = parse_from(from_addr)
        self.from_address = from_address
        domain = from_address.rpartition("@")[2]
        self._mailto = settings.unsubscribe_mailto or f"unsubscribe@{domain}"
        self._mime = MimeSkeleton(
            from_header=format_address(from_name, from_address),
            reply_to=parse_from(reply_to)[1] if reply_to else None, domain=domain)
        self._dkim = None
        if dkim_selector and dkim_private_key_path:
            self._dkim = dkimsign.DkimSigner(
                selector=dkim_selector, domain=dkim_domain or domain,
                private_key=Path(dkim_private_key_path).read_bytes(),
                reply_to=bool(reply_to))
        return self

    # Load helpers ---------------------------------------------------------------------
    def _footer(self, protected: Protected) -> str:
        # Literal HTML (not a placeholder) so that the text part gets the footer as text.
        href = protected.add("{{ unsubscribe_url }}")
        address = htmllib.escape(self._settings.physical_address)
        return ('<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
                'border="0"><tr><td style="padding:16px;font-family:Arial,sans-serif;'
                'font-size:12px;line-height:18px;color:#666666;text-align:center;">'
                f'{address}<br><a href="{href}" style="color:#666666;'
                'text-decoration:underline;">Unsubscribe</a></td></tr></table>')

    def _load_text(self, text_path: Path | None, protected: Protected) -> _Part | None:
        if text_path is not None:
            try:
                text_source = text_path.read_text(encoding="utf-8")
            except OSError as exc:
                raise TemplateError("R201", f"text template not found: {text_path}",
                                    str(text_path)) from exc
            template = compile_template(text_source, name=str(text_path), html=False)
            return _Part(template, str(text_path), None, None)
        text_source, lines = protected.restore_with_lines(html_to_text(self._html_only))
        try:
            template = compile_template(text_source, name=f"{self.path}#text", html=False)
        except TemplateError:
            return None  # Jinja blocks did not survive html2text: convert per message
        return _Part(template, str(self.path), lines, protected)

    # Rendering ------------------------------------------------------------------------
    def _context(self, contact: Mapping[str, Any], message_id: int,
                 context: Mapping[str, Any], pixel: bool) -> dict[str, Any]:
        token = self._signer.message_token(message_id)
        ctx: dict[str, Any] = dict(context)
        ctx["contact"] = contact
        ctx["unsubscribe_url"] = self._base + unsubscribe_path(token)
        ctx["view_in_browser_url"] = self._base + view_path(token)
        ctx[CLICK_PREFIX] = Markup(f"{self._base}/c/{token}/")
        ctx["_m"] = token
        ctx["_pixel"] = pixel
        ctx[TRACKER] = self._html_tracker
        ctx["_preheader"] = ""
        if self._preheader is not None:
            text = _render(self._preheader, ctx)
            ctx["_preheader"] = Markup(_PREHEADER.format(text=text))
        return ctx

    def render(self, contact: Mapping[str, Any], *, message_id: int,
               context: Mapping[str, Any]) -> RenderedEmail:
        """The complete message for one contact; raises TemplateError T302 on a render error."""
        ctx = self._context(contact, message_id, context, pixel=True)
        html = _render(self._html, ctx)
        subject = clean(_render(self._subject, ctx))  # the header's value, one line
        text = self._render_text(ctx, html)
        to = format_address(_full_name(contact), contact.get("email") or "")
        message_id_header = self._mime.message_id(message_id)
        raw, wire_ok = self._mime.build_wire(
            to=to, subject=subject, date=clock.now(), message_id=message_id_header,
            list_unsubscribe=f"<{ctx['unsubscribe_url']}>,\r\n <mailto:{self._mailto}"
                             "?subject=unsubscribe>",
            ledger_id=message_id, text=text, html=html)
        if self._dkim is not None:
            signature = self._dkim.signature(raw)
            raw, wire_ok = signature + raw, wire_ok and wire_clean_headers(signature)
        return RenderedEmail(to=to, subject=subject, message_id_header=message_id_header,
                             raw=raw, html=html, text=text, wire_clean=wire_ok)

    def _render_text(self, ctx: dict[str, Any], html: str) -> str:
        if self._text is None:
            return html_to_text(html)
        ctx[TRACKER] = self._text_tracker
        try:
            return _render(self._text, ctx)
        finally:
            ctx[TRACKER] = self._html_tracker

    def render_html_for_view(self, contact: Mapping[str, Any], message_id: int,
                             context: Mapping[str, Any]) -> str:
        """The same HTML as sent, without the open pixel (``GET /v/{token}``)."""
        return _render(self._html, self._context(contact, message_id, context, pixel=False))

    def render_preview(self, contact: Mapping[str, Any], *, context: Mapping[str, Any],
                       message_id: int = 0) -> RenderedEmail:
        """What `reach preview` shows: exactly the message that would be sent."""
        return self.render(contact, message_id=message_id, context=context)

    def check(self, contacts: list[Mapping[str, Any]],
              context: Mapping[str, Any]) -> list[Diagnostic]:
        """Render against sample contacts; every distinct problem once, with file:line."""
        found: dict[tuple[str, str, int | None], Diagnostic] = {}
        for index, contact in enumerate(contacts):
            try:
                self.render(contact, message_id=0, context=context)
            except TemplateError as exc:
                who = contact.get("email") or f"sample contact #{index + 1}"
                key = (exc.code, exc.message, exc.line)
                if key not in found:
                    found[key] = Diagnostic(
                        code=exc.code, message=f"{exc.message} (for {who})", file=exc.file,
                        line=exc.line, hint=exc.hint)
        return list(found.values())


def _full_name(contact: Mapping[str, Any]) -> str:
    parts = [contact.get("first_name"), contact.get("last_name")]
    return " ".join(str(p) for p in parts if p)


def _insert_before_body_end(body: str, snippet: str) -> str:
    matches = list(_BODY_CLOSE.finditer(body))
    if not matches:
        return body + snippet
    at = matches[-1].start()
    return body[:at] + snippet + body[at:]


def _render(part: _Part, ctx: dict[str, Any]) -> str:
    try:
        return part.template.render(ctx)
    except UndefinedError as exc:
        name = undefined_name(exc)
        raise TemplateError(
            "T302", f"missing value: {exc.message}", part.name, _source_line(part, exc, name),
            f"give the contact a value for {name!r} or write "
            f"{{{{ ... | default('') }}}}" if name else "use | default(...)") from exc
    except (JinjaError, ArithmeticError, ValueError, TypeError, LookupError) as exc:
        raise TemplateError("T302", f"template does not render: {exc}", part.name,
                            _source_line(part, exc, None),
                            "check the expression on this line") from exc


def _source_line(part: _Part, exc: BaseException, name: str | None) -> int | None:
    """The marketer's line of a render error in a compiled (MJML → HTML) template."""
    line = error_line(exc, part.template.name or "")
    if line is None or part.lines is None or part.protected is None:
        return line
    indices = part.lines.get(line, [])
    candidates = [i for i in indices if part.protected.lines[i] is not None]
    if name is not None:
        named = [i for i in candidates if name in part.protected.constructs[i]]
        candidates = named or candidates
    return part.protected.lines[candidates[0]] if candidates else None


__all__ = ["EmailTemplate", "RenderedEmail"]
