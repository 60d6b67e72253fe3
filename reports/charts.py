"""Inline SVG charts for the HTML report: no JavaScript, no fonts, no network.

Each chart is an ``<svg role="img">`` with a ``<title>`` and ``<desc>`` (what a screen
reader says), a ``viewBox`` so it scales with the page, and colours that keep a contrast
ratio above 4.5:1 against white for text and 3:1 for marks (WCAG 2.1 1.4.3 and 1.4.11).
"""

from __future__ import annotations

from html import escape
from itertools import count
from typing import Any

INK = "#1a1a1a"
MUTED = "#595959"
GRID = "#d0d0d0"
BLUE = "#1f4e79"
ORANGE = "#a34700"
GREEN = "#2e6b30"
PALETTE = (BLUE, ORANGE, GREEN, "#6a3d9a", "#8c2d04")
_ids = count(1)


def _svg(width: int, height: int, title: str, desc: str, body: list[str]) -> str:
    n = next(_ids)
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
            f'aria-labelledby="t{n} d{n}" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="t{n}">{escape(title)}</title><desc id="d{n}">{escape(desc)}</desc>'
            + "".join(body) + "</svg>")


def _text(x: float, y: float, label: str, *, anchor: str = "start", size: int = 13,
          fill: str = INK, weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
            f'fill="{fill}" font-weight="{weight}">{escape(label)}</text>')


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def funnel(stages: list[tuple[str, int]]) -> str:
    """Horizontal bars, each stage as a share of the first (sent)."""
    width, bar_h, gap, left = 640, 28, 10, 110
    top = stages[0][1] if stages else 0
    body, height = [], len(stages) * (bar_h + gap) + 10
    for i, (label, value) in enumerate(stages):
        y = 5 + i * (bar_h + gap)
        share = value / top if top else 0.0
        w = max(1.0, (width - left - 140) * share)
        body.append(_text(left - 8, y + bar_h * 0.68, label, anchor="end"))
        body.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                    f'fill="{GREEN if i == len(stages) - 1 else BLUE}" rx="3"/>')
        body.append(_text(left + w + 8, y + bar_h * 0.68, f"{value:,} ({_pct(share)})"))
    desc = "; ".join(f"{label}: {value:,}" for label, value in stages)
    return _svg(width, height, "Funnel from sent to converted", desc, body)


def timeline(series: dict[str, Any]) -> str:
    """Human opens and clicks per hour since send (total opens dashed), as lines."""
    hours = int(series.get("hours") or 0)
    lines = [("Opens (human)", series.get("opens_human") or [], BLUE, ""),
             ("Opens (all)", series.get("opens_total") or [], MUTED, ' stroke-dasharray="5 4"'),
             ("Clicks (human)", series.get("clicks_human") or [], ORANGE, "")]
    width, height, left, right, top, bottom = 640, 240, 48, 16, 28, 40
    peak = max([1, *(v for _, values, _, _ in lines for v in values)])
    plot_w, plot_h = width - left - right, height - top - bottom

    def xy(i: int, v: float) -> tuple[float, float]:
        return (left + plot_w * i / max(1, hours - 1), top + plot_h * (1 - v / peak))

    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
            f'stroke="{INK}"/>', f'<line x1="{left}" y1="{top}" x2="{left}" '
            f'y2="{top + plot_h}" stroke="{INK}"/>']
    for frac in (0.5, 1.0):
        _, y = xy(0, peak * frac)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
                    f'stroke="{GRID}"/>')
        body.append(_text(left - 6, y + 4, f"{peak * frac:,.0f}", anchor="end", size=11))
    for h in range(0, hours, 12):
        x, _ = xy(h, 0)
        body.append(_text(x, top + plot_h + 16, f"{h} h", anchor="middle", size=11))
    body.append(_text(left + plot_w / 2, height - 6, "hours since send (last: later)",
                      anchor="middle", size=11, fill=MUTED))
    for i, (label, values, colour, dash) in enumerate(lines):
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(h, v) for h, v in enumerate(values)))
        if points:
            body.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                        f'stroke-width="2"{dash}/>')
        lx = left + 8 + i * 150
        body.append(f'<line x1="{lx}" y1="12" x2="{lx + 22}" y2="12" stroke="{colour}" '
                    f'stroke-width="3"{dash}/>')
        body.append(_text(lx + 28, 16, label, size=12))
    totals = ", ".join(f"{label} {sum(values):,}" for label, values, _, _ in lines)
    return _svg(width, height, "Engagement per hour since send",
                f"Over {hours} hours: {totals}", body)


def intervals(rows: list[dict[str, Any]], key: str, ci_key: str, label: str,
              winner: str | None = None) -> str:
    """Dot (observed rate) and whisker (interval) per variant; the winner in green."""
    width, row_h, left, right = 640, 34, 70, 150
    usable = [r for r in rows if r.get(key) is not None and r.get(ci_key)]
    high = max([0.01, *(r[ci_key][1] for r in usable)])
    height = 30 + row_h * max(1, len(usable)) + 24
    plot_w = width - left - right

    def x(v: float) -> float:
        return left + plot_w * v / high

    body = [f'<line x1="{left}" y1="{height - 24}" x2="{left + plot_w}" y2="{height - 24}" '
            f'stroke="{INK}"/>']
    for tick in (0.0, high / 2, high):
        body.append(_text(x(tick), height - 8, _pct(tick), anchor="middle", size=11))
    for i, r in enumerate(usable):
        y = 24 + i * row_h + row_h / 2
        colour = GREEN if r["variant"] == winner else BLUE
        lo, hi = r[ci_key]
        body.append(_text(left - 10, y + 4, str(r["variant"]), anchor="end",
                          weight="bold" if r["variant"] == winner else "normal"))
        body.append(f'<line x1="{x(lo):.1f}" y1="{y}" x2="{x(hi):.1f}" y2="{y}" '
                    f'stroke="{colour}" stroke-width="2"/>')
        for end in (lo, hi):
            body.append(f'<line x1="{x(end):.1f}" y1="{y - 7}" x2="{x(end):.1f}" '
                        f'y2="{y + 7}" stroke="{colour}" stroke-width="2"/>')
        body.append(f'<circle cx="{x(r[key]):.1f}" cy="{y}" r="6" fill="{colour}"/>')
        body.append(_text(left + plot_w + 10, y + 4,
                          f"{_pct(r[key])} [{_pct(lo)}, {_pct(hi)}]", size=12))
    body.append(_text(left, 14, label, size=12, fill=MUTED))
    desc = "; ".join(f"{r['variant']}: {_pct(r[key])}, interval {_pct(r[ci_key][0])} to "
                     f"{_pct(r[ci_key][1])}" for r in usable) or "no variants"
    return _svg(width, height, f"{label} per variant with intervals", desc, body)


def money(items: list[tuple[str, float, float]], currency: str) -> str:
    """Revenue and cost side by side per item (the whole report, then each variant)."""
    width, row_h, left = 640, 52, 110
    peak = max([1.0, *(max(rev, cost) for _, rev, cost in items)])
    plot_w = width - left - 170
    body = []
    for i, (label, revenue, cost) in enumerate(items):
        y = 8 + i * row_h
        body.append(_text(left - 8, y + 22, label, anchor="end"))
        for j, (name, value, colour) in enumerate((("revenue", revenue, GREEN),
                                                   ("cost", cost, ORANGE))):
            w = max(1.0, plot_w * value / peak)
            body.append(f'<rect x="{left}" y="{y + j * 20}" width="{w:.1f}" height="16" '
                        f'fill="{colour}" rx="2"/>')
            body.append(_text(left + w + 6, y + j * 20 + 13,
                              f"{name} {value:,.2f} {currency}", size=12))
    desc = "; ".join(f"{label}: revenue {rev:,.2f}, cost {cost:,.2f} {currency}"
                     for label, rev, cost in items)
    return _svg(width, 8 + row_h * len(items), "Revenue and cost", desc, body)
