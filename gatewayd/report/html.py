"""`gatewayd report`: one self-contained HTML file (inline CSS and SVG bar charts, no script, no
external asset), something a manager can open offline or forward as an attachment."""

from __future__ import annotations

import datetime as dt
from html import escape

from gatewayd.report.sections import Bar, Section, headline, sections
from gatewayd.report.usage import ReportData

BAR_HEIGHT = 18
BAR_GAP = 8
LABEL_WIDTH = 210
CHART_WIDTH = 640
VALUE_WIDTH = 80
BAR_COLOUR = "#2f6fb0"
BEFORE_COLOUR = "#b9cfe6"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin: 1.6em 0 0.2em; }
.sub, .note { color: #666; margin-top: 0; } .headline { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0; } th, td { padding: 0.2em 0.8em; text-align: left; }
th { border-bottom: 1px solid #999; } tr:nth-child(even) td { background: #f3f6f9; }
svg.chart text { font-size: 12px; fill: #222; } .empty { color: #666; font-style: italic; }
footer { margin-top: 3em; color: #888; font-size: 0.85em; }
"""


def bar_chart(title: str, bars: list[Bar]) -> str:
    """Horizontal bars, longest = full width; a bar's `before` is drawn as a thinner light bar under it."""
    largest = max([b.value for b in bars] + [b.before or 0 for b in bars]) or 1.0
    span = CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    row = BAR_HEIGHT + BAR_GAP
    height = row * len(bars) + BAR_GAP
    parts = [(f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{height}" '
             f'viewBox="0 0 {CHART_WIDTH} {height}" role="img" aria-label="{escape(title)}">')]
    for index, bar in enumerate(bars):
        top = BAR_GAP + index * row
        width = max(1.0, span * bar.value / largest) if bar.value > 0 else 0.0
        parts.append(f'<text x="{LABEL_WIDTH - 6}" y="{top + BAR_HEIGHT - 5}" text-anchor="end">'
                     f'{escape(bar.label)}</text>')
        parts.append(f'<rect class="bar" x="{LABEL_WIDTH}" y="{top}" width="{width:.1f}" height="{BAR_HEIGHT}" '
                     f'fill="{BAR_COLOUR}"><title>{escape(bar.label)}: {escape(bar.text)}</title></rect>')
        if bar.before is not None:
            before = span * bar.before / largest
            parts.append(f'<rect class="before" x="{LABEL_WIDTH}" y="{top + BAR_HEIGHT - 4}" width="{before:.1f}" '
                         f'height="4" fill="{BEFORE_COLOUR}"/>')
        parts.append(f'<text x="{LABEL_WIDTH + width + 6:.1f}" y="{top + BAR_HEIGHT - 5}">{escape(bar.text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_section(section: Section) -> str:
    parts = [f"<section><h2>{escape(section.title)}</h2><p class=\"note\">{escape(section.note)}</p>"]
    if not section.rows:
        parts.append(f'<p class="empty">{escape(section.empty)}</p>')
    else:
        if any(bar.value > 0 for bar in section.bars):
            parts.append(bar_chart(section.title, section.bars))
        parts.append(html_table(section.headers, section.rows))
    parts.append("</section>")
    return "".join(parts)


def render_html(data: ReportData, generated: dt.datetime | None = None) -> str:
    generated = generated or dt.datetime.now().astimezone()
    title = f"Office network report: {data.period.label}"
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="sub">{escape(data.period.describe())}, compared with {escape(data.previous.describe())}</p>']
    body.extend(f'<p class="headline">{escape(line)}</p>' for line in headline(data))
    body.extend(render_section(section) for section in sections(data))
    body.append(f"<footer>gatewayd report, made {generated:%Y-%m-%d %H:%M %Z} from Prometheus.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
