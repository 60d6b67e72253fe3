"""Flat exports of reports: one CSV row per campaign, journey, step and variant.

The ``level`` column says which; ``name`` is always the campaign or journey, ``step_id``
and ``variant`` are empty where they do not apply. Columns are fixed (not inferred from
the data) so a spreadsheet built on the file keeps working from one report to the next.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FIGURES = (
    "audience", "sent", "delivered", "bounced", "failed", "unknown",
    "opens_total", "opens_unique", "opens_human", "clicks_total", "clicks_unique",
    "clicks_human", "open_rate", "human_open_rate", "ctr", "human_ctr", "ctor", "human_ctor",
    "unsubscribes", "complaints", "conversions", "converters", "conversion_rate", "revenue",
    "revenue_per_recipient", "cost", "currency", "roi", "roas", "cpa",
)
INTERVALS = ("click_ci", "conversion_ci")
COLUMNS = ("level", "kind", "name", "step_id", "variant", *FIGURES,
           "click_ci_low", "click_ci_high", "conversion_ci_low", "conversion_ci_high",
           "decision_winner", "decision_outcome")


def _row(level: str, report: dict[str, Any], fig: dict[str, Any], step: str | None = None,
         variant: str | None = None, decision: dict[str, Any] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"level": level, "kind": report.get("kind"), "name": report["name"],
                           "step_id": step, "variant": variant}
    row.update({k: fig.get(k) for k in FIGURES})
    for key in INTERVALS:
        ci = fig.get(key) or [None, None]
        row[f"{key}_low"], row[f"{key}_high"] = ci[0], ci[1]
    if decision:
        row["decision_winner"], row["decision_outcome"] = decision["winner"], decision["outcome"]
    return row


def rows(reports: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every level of every report as flat dicts with the keys of ``COLUMNS``."""
    for report in reports:
        yield _row(report.get("kind") or "campaign", report, report,
                   decision=report.get("decision"))
        for v in report.get("variants") or []:
            yield _row("variant", report, v, variant=v["variant"])
        for step in report.get("steps") or []:
            yield _row("step", report, step, step=step["step_id"], decision=step.get("decision"))
            for v in step.get("variants") or []:
                yield _row("variant", report, v, step=step["step_id"], variant=v["variant"])


def to_csv(reports: list[dict[str, Any]]) -> str:
    """The CSV text (header + one row per level; empty cells for missing values)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(reports))
    return buf.getvalue()


def write_csv(reports: list[dict[str, Any]], path: Path) -> None:
    """Write :func:`to_csv` to ``path`` (UTF-8)."""
    path.write_text(to_csv(reports), encoding="utf-8", newline="")
