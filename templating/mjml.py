"""MJML → HTML, once per template content, with the Jinja2 inside kept intact.

MRML (the Rust port of MJML, bound by ``mjml-python``) parses the template as XML, so Jinja
constructs that hold quotes or ``<`` would break it or be rewritten. Every ``{{ … }}``,
``{% … %}`` and ``{# … #}`` is therefore swapped for an inert alphanumeric placeholder before
compiling and restored afterwards; the placeholder remembers the source line of its construct
so that a render error in the compiled HTML can be reported on the marketer's own line.

MRML's errors carry no position, so when it refuses a template a small tag-balance scanner
finds the first offending line itself (unclosed or mismatched tag, stray ``<``, unknown
``mj-`` component).
"""

from __future__ import annotations

import bisect
import difflib
import hashlib
import os
import re
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mjml as _mrml

from templating.errors import TemplateError

# Every component of MJML 4; an `mj-` tag outside this set is a typo MRML silently drops.
MJML_COMPONENTS = frozenset({
    "mjml", "mj-head", "mj-body", "mj-include", "mj-attributes", "mj-all", "mj-class",
    "mj-breakpoint", "mj-font", "mj-html-attributes", "mj-html-attribute", "mj-selector",
    "mj-preview", "mj-style", "mj-title", "mj-accordion", "mj-accordion-element",
    "mj-accordion-title", "mj-accordion-text", "mj-button", "mj-carousel", "mj-carousel-image",
    "mj-column", "mj-divider", "mj-group", "mj-hero", "mj-image", "mj-navbar", "mj-navbar-link",
    "mj-raw", "mj-section", "mj-social", "mj-social-element", "mj-spacer", "mj-table", "mj-text",
    "mj-wrapper",
})
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed",
                   "param", "source", "track", "wbr"})

_JINJA = re.compile(
    r"\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}|\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S
)
_TAG = re.compile(
    r"<(/?)([A-Za-z][\w:.-]*)((?:\s+[^\s=/>\"']+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'))?)*)\s*(/?)>"
)
_CACHE_FORMAT = "1"  # bump when the cached artifact changes shape
_memory: dict[str, str] = {}


def _mrml_version() -> str:
    try:
        return version("mjml-python")
    except PackageNotFoundError:  # pragma: no cover - only when run from a source tree
        return "unknown"


@dataclass
class Protected:
    """A source with its Jinja constructs swapped for placeholders, and the way back."""

    text: str
    marker: str
    constructs: list[str] = field(default_factory=list)
    lines: list[int | None] = field(default_factory=list)  # 1-based source line, None if added

    def add(self, construct: str, line: int | None = None) -> str:
        """Register a construct inserted after protection; return its placeholder."""
        self.constructs.append(construct)
        self.lines.append(line)
        return self.placeholder(len(self.constructs) - 1)

    def placeholder(self, index: int) -> str:
        return f"{self.marker}{index}X"

    def pattern(self) -> re.Pattern[str]:
        return re.compile(re.escape(self.marker) + r"(\d+)X")

    def restore(self, text: str) -> str:
        """Put the original constructs back."""
        return self.pattern().sub(lambda m: self.constructs[int(m.group(1))], text)

    def restore_with_lines(self, text: str) -> tuple[str, dict[int, list[int]]]:
        """Restore, and say which constructs (by index) sit on each line of the result."""
        pieces: list[str] = []
        where: list[tuple[int, int]] = []  # (offset in result, construct index)
        size = last = 0
        for match in self.pattern().finditer(text):
            chunk = text[last:match.start()]
            pieces.append(chunk)
            size += len(chunk)
            index = int(match.group(1))
            where.append((size, index))
            construct = self.constructs[index]
            pieces.append(construct)
            size += len(construct)
            last = match.end()
        pieces.append(text[last:])
        result = "".join(pieces)
        starts = line_starts(result)
        by_line: dict[int, list[int]] = {}
        for offset, index in where:
            by_line.setdefault(bisect.bisect_right(starts, offset), []).append(index)
        return result, by_line


def line_starts(text: str) -> list[int]:
    """Offsets where each line begins (for offset → 1-based line with bisect_right)."""
    return [0] + [m.end() for m in re.finditer("\n", text)]


def protect_jinja(source: str) -> Protected:
    """Swap every Jinja construct of ``source`` for an alphanumeric placeholder."""
    digest = hashlib.sha256(source.encode()).hexdigest()
    salt = 0
    marker = f"JX{digest[:8]}N"
    while marker in source:  # a placeholder must never occur in the source itself
        salt += 1
        marker = f"JX{hashlib.sha256(f'{salt}{digest}'.encode()).hexdigest()[:8]}N"
    protected = Protected(text="", marker=marker)
    starts = line_starts(source)
    protected.text = _JINJA.sub(
        lambda m: protected.add(m.group(0), bisect.bisect_right(starts, m.start())), source
    )
    return protected


def default_cache_dir() -> Path:
    """``$REACH_MJML_CACHE`` or ``~/.cache/reach/mjml``."""
    env = os.environ.get("REACH_MJML_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "reach" / "mjml"


def compile_protected(protected: Protected, *, name: str, source: str,
                      cache_dir: Path | None = None) -> str:
    """Compile a protected MJML source to protected HTML, cached by content hash.

    The cache key is the hash of the original source and the MRML version: placeholders are
    derived from the source, so the same source always yields the same protected HTML.
    """
    key = hashlib.sha256(
        f"{_CACHE_FORMAT}\0{_mrml_version()}\0{source}".encode()
    ).hexdigest()
    cached = _memory.get(key)
    if cached is not None:
        return cached
    folder = cache_dir if cache_dir is not None else default_cache_dir()
    path = folder / f"{key}.html"
    try:
        cached = path.read_text(encoding="utf-8")
    except OSError:
        cached = None
    if cached is None:
        unknown = find_structure_problem(source, name=name, balance=False)
        if unknown is not None:  # MRML drops unknown tags silently; a typo must not
            raise unknown
        try:
            cached = _mrml.mjml2html(protected.text)
        except Exception as exc:  # MRML raises ValueError; anything else is a refusal too
            raise _locate(source, name, str(exc)) from exc
        _write_atomic(path, cached)
    _memory[key] = cached
    return cached


def compile_mjml(source: str, *, name: str, cache_dir: Path | None = None) -> str:
    """Compile an MJML template (Jinja inside kept verbatim) to HTML.

    Raises :class:`TemplateError` ``T301`` naming the line of ``name`` that is wrong.
    """
    protected = protect_jinja(source)
    html = compile_protected(protected, name=name, source=source, cache_dir=cache_dir)
    return protected.restore(html)


def _write_atomic(path: Path, text: str) -> None:
    # The disk cache is an optimisation: a read-only home must not stop a send.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def _blank_jinja(source: str) -> str:
    """The source with Jinja constructs turned to spaces (offsets and lines unchanged)."""
    return _JINJA.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), source)


def find_structure_problem(source: str, *, name: str,
                           balance: bool = True) -> TemplateError | None:
    """The first structural problem of an MJML source, or None.

    With ``balance`` false only unknown ``mj-`` components are reported: MRML accepts some
    unbalanced HTML (a table opened in one ``mj-raw`` and closed in another), so the tag
    balance is only consulted to locate an error MRML has already reported.
    """
    text = _blank_jinja(source)
    starts = line_starts(text)

    def err(offset: int, message: str, hint: str | None = None) -> TemplateError:
        return TemplateError("T301", message, name, bisect.bisect_right(starts, offset), hint)

    stack: list[tuple[str, int]] = []
    pos = 0
    seen_root = False
    while (i := text.find("<", pos)) >= 0:
        if text.startswith("<!--", i):
            end = text.find("-->", i + 4)
            if end < 0:
                return err(i, "comment '<!--' is never closed", "add '-->'")
            pos = end + 3
            continue
        if text.startswith(("<!", "<?"), i):
            end = text.find(">", i)
            pos = len(text) if end < 0 else end + 1
            continue
        match = _TAG.match(text, i)
        if match is None and not balance:
            pos = i + 1
            continue
        if match is None:
            return err(i, "'<' does not start a valid tag",
                       "quote attribute values (name=\"value\") and write a literal '<' as &lt;")
        closing, tag, _attrs, self_closing = match.groups()
        tag_l = tag.lower()
        pos = match.end()
        if tag_l.startswith("mj-") and tag_l not in MJML_COMPONENTS:
            close = difflib.get_close_matches(tag_l, sorted(MJML_COMPONENTS), n=1)
            return err(i, f"unknown MJML component <{tag}>",
                       f"did you mean <{close[0]}>?" if close else None)
        if not balance:
            continue
        if not seen_root and not closing:
            seen_root = True
            if tag_l != "mjml":
                return err(i, f"the template must start with <mjml>, not <{tag}>")
        if self_closing or tag_l in _VOID:
            continue
        if not closing:
            stack.append((tag_l, i))
            continue
        if not stack:
            return err(i, f"closing tag </{tag}> has no opening tag")
        open_tag, open_at = stack[-1]
        if open_tag != tag_l:
            opened = bisect.bisect_right(starts, open_at)
            return err(i, f"closing tag </{tag}> does not match <{open_tag}> opened on line "
                          f"{opened}", f"close <{open_tag}> first")
        stack.pop()
    if stack:
        open_tag, open_at = stack[-1]
        return err(open_at, f"<{open_tag}> is never closed", f"add </{open_tag}>")
    if balance and not seen_root:
        return err(0, "no <mjml> root element found")
    return None


def _locate(source: str, name: str, mrml_message: str) -> TemplateError:
    problem = find_structure_problem(source, name=name)
    if problem is not None:
        problem.message += f" (MJML: {mrml_message})"
        return problem
    return TemplateError("T301", f"MJML does not compile: {mrml_message}", name, 1,
                         "check the MJML syntax of this file")
