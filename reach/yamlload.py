"""YAML loading that keeps line and column of every key and value.

ruamel.yaml's round-trip nodes carry positions (``lc``), so a pydantic error's ``loc`` can be
mapped back to the place in the file a marketer has to fix. Duplicate keys are errors.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError

from reach.errors import Diagnostic


@dataclass
class LoadedDoc:
    """A parsed YAML file: the data with positions, its text and its display name."""

    file: str
    text: str
    data: Any


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def load_yaml(path: Path, display: str | None = None) -> tuple[LoadedDoc | None, list[Diagnostic]]:
    """Parse one file; on a syntax or duplicate-key error return a positioned diagnostic."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [Diagnostic("Y001", f"cannot read file: {exc.strerror}", file=name)]
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str) -> tuple[LoadedDoc | None, list[Diagnostic]]:
    """Parse YAML text; see :func:`load_yaml`."""
    try:
        data = _yaml().load(text)
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        key = _dup_key_name(exc)
        return None, [
            Diagnostic(
                "Y002",
                f"duplicate key {key!r}" if key else "duplicate key",
                file=name,
                line=mark.line + 1 if mark else None,
                col=mark.column + 1 if mark else None,
                width=len(key) if key else 1,
                hint="each key may appear once in a mapping; remove or rename one of them",
            )
        ]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        return None, [
            Diagnostic(
                "Y001",
                f"YAML syntax error: {problem}",
                file=name,
                line=mark.line + 1 if mark else None,
                col=mark.column + 1 if mark else None,
                hint="check indentation (spaces, not tabs) and quote values containing ': ' or '#'",
            )
        ]
    if not isinstance(data, CommentedMap):
        return None, [
            Diagnostic(
                "Y003",
                "the file must be a YAML mapping (key: value lines)",
                file=name,
                line=1,
                col=1,
            )
        ]
    return LoadedDoc(file=name, text=text, data=data), []


def _dup_key_name(exc: DuplicateKeyError) -> str | None:
    problem = exc.problem or ""
    if '"' in problem:
        return problem.split('"')[1]
    return None


def to_plain(value: Any) -> Any:
    """ruamel's commented containers to plain dicts and lists (for pydantic)."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def position(data: Any, loc: tuple[Any, ...], want_key: bool = False) -> tuple[int, int, int]:
    """(line, col, width) of the node at ``loc``; falls back to the nearest ancestor.

    ``want_key`` points at the key of the last element rather than its value, which is
    where an 'unknown key' error belongs.
    """
    node = data
    line, col, width = 1, 1, 1
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, CommentedMap) and part in node:
            if last and want_key:
                kl, kc = node.lc.key(part)
                return kl + 1, kc + 1, len(str(part))
            vl, vc = node.lc.value(part)
            line, col = vl + 1, vc + 1
            width = len(str(node[part])) if not isinstance(node[part], dict | list) else 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            il, ic = node.lc.item(part)
            line, col, width = il + 1, ic + 1, 1
            node = node[part]
        else:
            # A pydantic union tag or a missing key: keep the last real position.
            if isinstance(node, CommentedMap) and node.lc.line is not None:
                line, col = node.lc.line + 1, node.lc.col + 1
            continue
    return line, col, width


def loc_to_path(loc: tuple[Any, ...]) -> str:
    """('steps', 2, 'wait') -> 'steps[2].wait'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def validate_model(
    model: type[BaseModel], doc: LoadedDoc, context: dict[str, Any] | None = None
) -> tuple[BaseModel | None, list[Diagnostic]]:
    """Validate a loaded document against a pydantic model, mapping errors to positions."""
    try:
        return model.model_validate(to_plain(doc.data), context=context), []
    except ValidationError as exc:
        return None, pydantic_diagnostics(exc, doc, model)


def _real_loc(data: Any, loc: tuple[Any, ...], keep_last: bool = False) -> tuple[Any, ...]:
    """Drop pydantic's union-member tags (e.g. 'EmailStep') that are not keys in the data.

    ``keep_last`` keeps the final part even though it is absent: a missing key's name.
    """
    node, out = data, []
    for i, part in enumerate(loc):
        if keep_last and i == len(loc) - 1:
            out.append(part)
            break
        in_map = isinstance(node, dict) and part in node
        in_seq = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_map or in_seq:
            node = node[part]
            out.append(part)
        elif isinstance(node, dict | list):
            continue
        else:
            out.append(part)
    return tuple(out)


def pydantic_diagnostics(
    exc: ValidationError, doc: LoadedDoc, model: type[BaseModel] | None = None
) -> list[Diagnostic]:
    """Turn every pydantic error into a positioned diagnostic with a hint."""
    seen: set[tuple[str, str]] = set()
    diags: list[Diagnostic] = []
    for err in exc.errors():
        kind = err["type"]
        loc = _real_loc(doc.data, tuple(err["loc"]), keep_last=kind == "missing")
        path = loc_to_path(loc)
        if kind == "extra_forbidden":
            key = str(loc[-1]) if loc else "?"
            allowed = allowed_keys(model, tuple(err["loc"])[:-1])
            line, col, width = position(doc.data, loc, want_key=True)
            hint = _did_you_mean(key, allowed)
            diag = Diagnostic("K101", f"unknown key {key!r}" + _where(loc[:-1]), doc.file, line,
                              col, path, hint, width)
        elif kind == "missing":
            key = str(loc[-1]) if loc else "?"
            line, col, width = position(doc.data, loc[:-1])
            diag = Diagnostic("K102", f"missing required key {key!r}" + _where(loc[:-1]),
                              doc.file, line, col, path,
                              f"add '{key}:' here", width)
        else:
            line, col, width = position(doc.data, loc)
            message = err["msg"].removeprefix("Value error, ")
            hint = (err.get("ctx") or {}).get("hint") if isinstance(err.get("ctx"), dict) else None
            diag = Diagnostic("K103", f"invalid value at '{path}': {message}", doc.file, line,
                              col, path, hint, width)
        marker = (diag.path or "", diag.code)
        if kind != "extra_forbidden" and marker in seen:
            continue
        seen.add(marker)
        diags.append(diag)
    return diags


def _where(loc: tuple[Any, ...]) -> str:
    return f" in '{loc_to_path(loc)}'" if loc else ""


def _members(tp: Any) -> list[Any]:
    """The concrete types inside Optional / Union / Annotated / list / dict annotations."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _members(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(tp) for m in _members(a)]
    return [tp]


def allowed_keys(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """Field names (aliases) allowed in the mapping at pydantic ``loc`` of ``model``."""
    if model is None:
        return []
    current: list[Any] = [model]
    for part in loc:
        nxt: list[Any] = []
        for tp in current:
            for member in _members(tp):
                origin = typing.get_origin(member)
                if isinstance(member, type) and issubclass(member, BaseModel):
                    if isinstance(part, str) and part == member.__name__:
                        nxt.append(member)
                        continue
                    for name, field in member.model_fields.items():
                        if part in (name, field.alias):
                            nxt.append(field.annotation)
                elif origin in (list, tuple) and isinstance(part, int):
                    nxt.extend(typing.get_args(member)[:1])
                elif origin is dict and isinstance(part, str):
                    nxt.extend(typing.get_args(member)[1:2])
        if nxt:
            current = nxt
    names: list[str] = []
    for tp in current:
        for member in _members(tp):
            if isinstance(member, type) and issubclass(member, BaseModel):
                for name, field in member.model_fields.items():
                    key = field.alias or name
                    if key not in names:
                        names.append(key)
    return names


def _did_you_mean(key: str, allowed: list[str]) -> str | None:
    if not allowed:
        return None
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
    listing = ", ".join(allowed)
    if close:
        return f"did you mean '{close[0]}'? allowed here: {listing}"
    return f"allowed here: {listing}"


def suggest(word: str, choices: list[str]) -> str | None:
    """A 'did you mean' hint for a misspelt name among ``choices``."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else None
