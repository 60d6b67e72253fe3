"""The HTML report: one self-contained page (inline CSS and SVG; no script, font or network).

``render_html(reports)`` turns report dicts (``reports.campaign`` / ``reports.journey``)
into the page; ``report_page(engine, name)`` builds the report of one campaign or journey
with its engagement timeline and renders it, for the tracking server's ``/reports/NAME``.
"""

from __future__ import annotations

from html import escape
from typing import Any

from sqlalchemy import Engine

from reach.errors import ReachError
from reports import charts

CSS = """
:root{color-scheme:light;--ink:#1a1a1a;--muted:#595959;--line:#d0d0d0;--accent:#1f4e79}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
 color:var(--ink);background:#fff}
main{max-width:980px;margin:0 auto;padding:1.5rem 1rem 3rem}
h1{font-size:1.6rem;margin:.2rem 0 1rem}h2{font-size:1.35rem;margin:2rem 0 .5rem;
 border-bottom:2px solid var(--accent);padding-bottom:.2rem}
h3{font-size:1.1rem;margin:1.4rem 0 .4rem}
.meta{color:var(--muted);margin:0 0 1rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:.6rem;
 margin:1rem 0}
.card{border:1px solid var(--line);border-radius:6px;padding:.6rem .8rem}
.card b{display:block;font-size:1.3rem}.card span{color:var(--muted);font-size:.85rem}
.decision{border-left:4px solid var(--accent);background:#f3f6fa;padding:.6rem .9rem;margin:1rem 0}
.chart{width:100%;height:auto;max-width:720px;display:block;margin:.4rem 0 1rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:600;padding:.3rem 0;color:var(--ink)}
th,td{border-bottom:1px solid var(--line);padding:.3rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#f3f3f3}
@media (max-width:600px){body{font-size:14px}.cards{grid-template-columns:1fr 1fr}}
"""

# (label, human key, total key, format) for the figures table.
TABLE_ROWS = [
    ("Audience", "audience", None, "int"), ("Sent", "sent", None, "int"),
    ("Delivered", "delivered", None, "int"), ("Bounced", "bounced", None, "int"),
    ("Failed", "failed", None, "int"), ("Unique opens", "opens_human", "opens_unique", "int"),
    ("Opens", None, "opens_total", "int"),
    ("Unique clicks", "clicks_human", "clicks_unique", "int"),
    ("Clicks", None, "clicks_total", "int"),
    ("Open rate", "human_open_rate", "open_rate", "pct"),
    ("Click-through rate", "human_ctr", "ctr", "pct"),
    ("Click-to-open rate", "human_ctor", "ctor", "pct"),
    ("Unsubscribes", "unsubscribes", None, "int"), ("Complaints", "complaints", None, "int"),
    ("Conversions", "conversions", None, "int"), ("Revenue", "revenue", None, "money"),
    ("Cost", "cost", None, "money"), ("ROI", "roi", None, "ratio"),
    ("ROAS", "roas", None, "ratio"), ("Cost per acquisition", "cpa", None, "money"),
]


def fmt(value: Any, kind: str = "") -> str:
    """A figure as the page shows it ("–" when undefined, e.g. ROI without cost)."""
    if value is None:
        return "–"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "ratio":
        return f"{value:,.2f}×"
    if kind == "money" or isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _e(value: Any) -> str:
    return escape(str(value))


def _cards(r: dict[str, Any]) -> str:
    cur = r.get("currency") or ""
    items = [("Sent", fmt(r.get("sent"))), ("Delivered", fmt(r.get("delivered"))),
             ("Open rate (human)", fmt(r.get("human_open_rate"), "pct")),
             ("CTR (human)", fmt(r.get("human_ctr"), "pct")),
             ("Conversions", fmt(r.get("conversions"))),
             ("Revenue", f"{fmt(r.get('revenue'), 'money')} {cur}"),
             ("ROI", fmt(r.get("roi"), "ratio"))]
    return '<div class="cards">' + "".join(
        f'<div class="card"><span>{_e(k)}</span><b>{_e(v)}</b></div>' for k, v in items) + "</div>"


def _figures_table(r: dict[str, Any], title: str) -> str:
    head = ("<thead><tr><th scope=\"col\">Figure</th><th scope=\"col\">Human</th>"
            "<th scope=\"col\">All</th></tr></thead>")
    body = []
    for label, human, total, kind in TABLE_ROWS:
        h = fmt(r.get(human), kind) if human else ""
        t = fmt(r.get(total), kind) if total else (h if human else "")
        body.append(f'<tr><th scope="row">{_e(label)}</th><td>{_e(h)}</td><td>{_e(t)}</td></tr>')
    return (f'<div class="scroll"><table><caption>{_e(title)}</caption>{head}<tbody>'
            + "".join(body) + "</tbody></table></div>")


def _variants_table(rows: list[dict[str, Any]], title: str) -> str:
    cols = [("Variant", "variant", ""), ("Sent", "sent", "int"),
            ("Delivered", "delivered", "int"), ("Opens (human)", "opens_human", "int"),
            ("Clicks (human)", "clicks_human", "int"),
            ("Click rate", "click_rate_human", "pct"), ("Conversions", "conversions", "int"),
            ("Conv. rate", "conversion_rate", "pct"), ("Revenue", "revenue", "money"),
            ("Cost", "cost", "money"), ("ROI", "roi", "ratio")]
    head = "".join(f'<th scope="col">{_e(c)}</th>' for c, _, _ in cols)
    body = "".join("<tr>" + "".join(
        (f'<th scope="row">{_e(r.get(k))}</th>' if k == "variant" else
         f"<td>{_e(fmt(r.get(k), kind))}</td>") for _, k, kind in cols) + "</tr>" for r in rows)
    return (f'<div class="scroll"><table><caption>{_e(title)}</caption><thead><tr>{head}'
            f"</tr></thead><tbody>{body}</tbody></table></div>")


def _variant_block(rows: list[dict[str, Any]], decision: dict[str, Any] | None,
                   currency: str, title: str, sentence: bool = True) -> str:
    if not rows:
        return ""
    winner = (decision or {}).get("winner")
    parts = [f"<h3>{_e(title)}</h3>"]
    if sentence:
        parts.append(f'<p class="decision"><strong>A/B decision:</strong> '
                     f'{_e((decision or {}).get("sentence") or "not decided yet.")}</p>')
    parts.append(charts.intervals(rows, "click_rate_human", "click_ci",
                                  "Click rate (human), 95% Wilson interval", winner))
    parts.append(charts.intervals(rows, "conversion_rate", "conversion_ci",
                                  "Conversion rate, 95% Wilson interval", winner))
    parts.append(_variants_table(rows, f"{title}: figures per variant"))
    parts.append(charts.money([(f"variant {r['variant']}", float(r.get("revenue") or 0),
                                float(r.get("cost") or 0)) for r in rows], currency))
    return "".join(parts)


def _holdout(h: dict[str, Any] | None) -> str:
    if not h:
        return ""
    rel = h.get("relative_lift")
    rel_txt = f" ({rel:+.1%} relative)" if rel is not None else ""
    return ("<h3>Holdout and incremental lift</h3><p>"
            f"Treated contacts converted at {h['treated_rate']:.2%} "
            f"({h['treated_converters']:,} of {h['treated_contacts']:,}); the holdout at "
            f"{h['holdout_rate']:.2%} ({h['holdout_converters']:,} of "
            f"{h['holdout_contacts']:,}). Lift {h['lift']:+.2%}{_e(rel_txt)}, "
            f"{h['confidence']:.0%} interval [{h['lift_ci_low']:+.2%}, "
            f"{h['lift_ci_high']:+.2%}], p = {h['p_value']:.3g}: about "
            f"{h['incremental_conversions']:,} incremental conversions.</p>")


def _section(r: dict[str, Any]) -> str:
    cur = r.get("currency") or ""
    title = f"{r.get('kind', 'campaign').capitalize()} {r['name']}"
    window = r.get("window") or {}
    goal = r.get("goal") or {}
    days = (window.get("within_seconds") or 0) / 86400
    meta = (f"Goal: {goal.get('event', 'none')}; conversions within {days:g} days of the last "
            f"touch ({window.get('basis', 'click_or_delivery').replace('_', ' ')}), "
            "last touch across all campaigns and journeys. Human figures leave out "
            "machine-flagged opens and clicks.")
    parts = [f'<section aria-labelledby="s-{_e(r["name"])}">',
             f'<h2 id="s-{_e(r["name"])}">{_e(title)}</h2><p class="meta">{_e(meta)}</p>',
             _cards(r)]
    if r.get("decision"):
        parts.append(f'<p class="decision"><strong>A/B decision:</strong> '
                     f'{_e(r["decision"]["sentence"])}</p>')
    parts.append("<h3>Funnel</h3>")
    parts.append(charts.funnel([("Sent", r.get("sent", 0)), ("Delivered", r.get("delivered", 0)),
                                ("Opened", r.get("opens_human", 0)),
                                ("Clicked", r.get("clicks_human", 0)),
                                ("Converted", r.get("converters", 0))]))
    if r.get("timeline"):
        parts.append("<h3>Engagement over time</h3>")
        parts.append(charts.timeline(r["timeline"]))
    parts.append("<h3>Revenue and ROI</h3>")
    parts.append(f"<p>Revenue {fmt(r.get('revenue'), 'money')} {_e(cur)} for a cost of "
                 f"{fmt(r.get('cost'), 'money')} {_e(cur)}: ROI {fmt(r.get('roi'), 'ratio')}, "
                 f"ROAS {fmt(r.get('roas'), 'ratio')}, cost per acquisition "
                 f"{fmt(r.get('cpa'), 'money')} {_e(cur)}.</p>")
    parts.append(charts.money([("total", float(r.get("revenue") or 0),
                                float(r.get("cost") or 0))], cur))
    parts.append(_variant_block(r.get("variants") or [], r.get("decision"), cur, "Variants",
                                sentence=not r.get("decision")))
    parts.append(_holdout(r.get("holdout")))
    parts.append(_figures_table(r, f"All figures of {title}"))
    for step in r.get("steps") or []:
        if "sent" not in step:
            continue
        parts.append(f"<h3>Step {_e(step['step_id'])}</h3>")
        parts.append(_figures_table(step, f"Step {step['step_id']} of {title}"))
        parts.append(_variant_block(step.get("variants") or [], step.get("decision"), cur,
                                    f"Step {step['step_id']}: variants"))
    parts.append("</section>")
    return "".join(parts)


def render_html(reports: list[dict[str, Any]]) -> str:
    """One self-contained HTML page for the given reports."""
    names = ", ".join(r["name"] for r in reports) or "nothing sent yet"
    body = "".join(_section(r) for r in reports) or "<p>Nothing has been sent yet.</p>"
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Reach report: {_e(names)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>Reach report</h1><p class=\"meta\">{_e(names)}</p>{body}</main></body></html>")


def report_page(engine: Engine, name: str) -> str:
    """The HTML page of one campaign or journey (with its timeline), for ``/reports/NAME``.

    Raises ``ReachError`` R202 when nothing has been sent under that name.
    """
    from reports.campaign import all_sources, report_for

    kinds = [kind for kind, source in all_sources(engine) if source == name]
    if not kinds:
        raise ReachError("R202", f"nothing has been sent for {name!r} yet",
                         hint="run it first with `reach run`")
    return render_html([report_for(engine, kind, name, with_timeline=True) for kind in kinds])
