"""One self-contained HTML page: sections with embedded PNGs and the monitor results table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from freshlake.monitor.results import CheckResult

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
.note { color: #555; font-size: 13px; }
img { max-width: 100%; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td:nth-child(4) { white-space: nowrap; }
tr.alert td { background: #fde2e1; } tr.skipped td { color: #888; }
"""

# Records how many embedded images decoded (naturalWidth > 0) in the title: headless checks read it.
IMAGE_PROBE = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.title = document.title + ' [images ' + ok + '/' + imgs.length + ']';
});
"""


@dataclass
class Section:
    """A titled part of the page: a plot (base64 PNG), or a note saying why there is none."""

    title: str
    png: str | None
    note: str = ""
    html: str = ""  # a table built with `html_table` (its cells escaped)


def results_table(results: Sequence[CheckResult]) -> str:
    """The monitor results as an HTML table, alerts first."""
    order = {"alert": 0, "ok": 1, "skipped": 2}
    rows = []
    for r in sorted(results, key=lambda r: (order.get(r.status, 3), r.name, r.subject)):
        cells = [
            escape(r.status),
            escape(r.name),
            escape(r.subject),
            escape(str(r.day or "")),
            f'<td class="num">{_num(r.value)}</td>',
            f'<td class="num">{_num(r.threshold)}</td>',
            escape(r.detail or ""),
        ]
        cells = [c if c.startswith("<td") else f"<td>{c}</td>" for c in cells]
        rows.append(f'<tr class="{escape(r.status)}">{"".join(cells)}</tr>')
    head = "".join(
        f"<th>{h}</th>"
        for h in ("status", "check", "subject", "day", "value", "threshold", "detail")
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def html_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain HTML table; numbers right-aligned (4 significant digits), text escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = [
            f'<td class="num">{_num(v)}</td>'
            if isinstance(v, float | int) and not isinstance(v, bool)
            else f"<td>{escape('' if v is None else str(v))}</td>"
            for v in row
        ]
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_page(
    title: str, summary: str, sections: Sequence[Section], monitors: str, monitor_note: str
) -> str:
    """The whole page as one HTML string (no external resources)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style>",
        f"<script>{IMAGE_PROBE}</script></head><body>",
        f"<h1>{escape(title)}</h1><p class='note'>{escape(summary)}</p>",
    ]
    for section in sections:
        parts.append(f"<h2>{escape(section.title)}</h2>")
        if section.note:
            parts.append(f"<p class='note'>{escape(section.note)}</p>")
        if section.html:
            parts.append(section.html)
        if section.png:
            alt = escape(section.title)
            parts.append(f'<img alt="{alt}" src="data:image/png;base64,{section.png}">')
    parts.append("<h2>Monitors</h2>")
    parts.append(f"<p class='note'>{escape(monitor_note)}</p>{monitors}")
    parts.append("</body></html>")
    return "\n".join(parts)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"
