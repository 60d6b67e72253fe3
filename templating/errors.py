"""The error a template raises when it does not compile or does not render."""

from __future__ import annotations

from reach.errors import Diagnostic, ReachError


class TemplateError(ReachError):
    """A template problem at a place in a file: T301 (compile) or T302/T303 (render).

    ``line`` is 1-based and counts lines of the marketer's own file (the ``.mjml``), never of
    the HTML compiled from it.
    """

    def __init__(self, code: str, message: str, file: str | None = None,
                 line: int | None = None, hint: str | None = None) -> None:
        super().__init__(code, message, hint)
        self.file = file
        self.line = line

    def diagnostic(self, file: str | None = None) -> Diagnostic:
        """The same problem as a :class:`Diagnostic` for `reach validate` output.

        ``file`` replaces the path shown (e.g. relative to the project); the reported file is
        kept when the error is in another file (a subject, a ``.txt`` part).
        """
        shown = self.file
        other_part = self.file is not None and ("#" in self.file or self.file.endswith(")"))
        if file is not None and not other_part:
            shown = file
        return Diagnostic(code=self.code, message=self.message, file=shown,
                          line=self.line, hint=self.hint)

    def __str__(self) -> str:
        where = self.file or "<template>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: error[{self.code}] {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text
