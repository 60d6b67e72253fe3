"""Errors that carry a stable code and tell the user what to do.

A ``Diagnostic`` is one problem found in a file, with its position; ``ReachError`` is raised
for problems that stop a command. The CLI turns both into ``file:line:col: error[CODE]``
lines with the offending source line and a hint, the way compilers print them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Stable codes. Never renumber; add new ones at the end of their group.
CODES: dict[str, str] = {
    "Y001": "YAML syntax error",
    "Y002": "duplicate key",
    "Y003": "file is not a mapping",
    "K101": "unknown key",
    "K102": "missing required key",
    "K103": "invalid value",
    "K104": "file kind not recognised",
    "R201": "template not found",
    "R202": "segment not found",
    "R203": "step not found",
    "R204": "duplicate name",
    "R205": "duplicate step id",
    "R206": "unknown attribute",
    "R207": "segments refer to each other in a cycle",
    "T301": "template does not compile",
    "T302": "template does not render for a sample contact",
    "T303": "SMS body too long",
    "D401": "database error",
    "I501": "bad input row",
    "C601": "configuration error",
}


@dataclass(frozen=True)
class Diagnostic:
    """One problem in one file, at one place."""

    code: str
    message: str
    file: str | None = None
    line: int | None = None  # 1-based
    col: int | None = None  # 1-based
    path: str | None = None  # key path in the document, e.g. steps[2].wait
    hint: str | None = None
    width: int = 1  # how many characters to underline
    severity: str = "error"

    def headline(self) -> str:
        where = self.file or "<input>"
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        return f"{where}: {self.severity}[{self.code}] {self.message}"

    def render(self, source: str | None = None) -> str:
        """The headline, the offending line with a caret under the key, and the hint."""
        out = [self.headline()]
        if source is not None and self.line is not None:
            lines = source.splitlines()
            if 0 < self.line <= len(lines):
                gutter = len(str(self.line + 1))
                if self.line >= 2:
                    out.append(f"{self.line - 1:>{gutter}} | {lines[self.line - 2]}")
                out.append(f"{self.line:>{gutter}} | {lines[self.line - 1]}")
                col = (self.col or 1) - 1
                out.append(f"{'':>{gutter}} | {' ' * col}{'^' * max(1, self.width)}")
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "path": self.path,
            "hint": self.hint,
            "severity": self.severity,
        }


class ReachError(Exception):
    """A problem that stops a command: exit code 1, a stable code and a hint."""

    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        text = f"error[{self.code}] {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


@dataclass
class ValidationFailed(Exception):
    """Raised when files do not validate; carries every diagnostic of every file."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def render(self, root: Path | None = None) -> str:
        sources: dict[str, str | None] = {}
        chunks = []
        for diag in self.diagnostics:
            if diag.file and diag.file not in sources:
                candidate = Path(diag.file)
                if root is not None and not candidate.is_absolute():
                    candidate = root / candidate
                try:
                    sources[diag.file] = candidate.read_text(encoding="utf-8")
                except OSError:
                    sources[diag.file] = None
            chunks.append(diag.render(sources.get(diag.file or "")))
        return "\n".join(chunks)

    def __str__(self) -> str:
        return f"{len(self.diagnostics)} error(s)"
