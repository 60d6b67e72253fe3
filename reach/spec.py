"""The base of every ``*Spec`` model: the YAML's shape, strict and immutable."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict


class SpecModel(BaseModel):
    """Unknown keys are errors (marketers misspell keys; a warning would be missed)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def check_duration(value: Any) -> Any:
    """A pydantic validator: ``2d``, ``30m``… (None passes); the error says how to write one."""
    if value is None:
        return value
    from reach.clock import ClockError, parse_duration

    try:
        parse_duration(value)
    except ClockError as exc:
        raise ValueError(str(exc)) from exc
    return value


def check_unique_ids(items: list[Any], what: str = "variant") -> list[Any]:
    """A pydantic validator: the ``id`` of each item appears once."""
    ids = [item.id for item in items]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"duplicate {what} id(s): {', '.join(dupes)}")
    return items


def content_hash(data: Any) -> str:
    """A stable short hash of JSON-serialisable data: the version of a compiled plan."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
