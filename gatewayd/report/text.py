"""`gatewayd report --text`: the report's sections as plain tables."""

from __future__ import annotations

from gatewayd.report.sections import Section, headline, sections
from gatewayd.report.usage import ReportData


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    return ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in (headers, *rows)]


def render_section(section: Section) -> list[str]:
    lines = [section.title, f"  ({section.note})"]
    lines.extend(table(section.headers, section.rows) if section.rows else [f"  {section.empty}"])
    return lines


def render_text(data: ReportData) -> str:
    lines = [f"gatewayd report: {data.period.label} ({data.period.describe()})",
             f"compared with {data.previous.describe()}", ""]
    lines.extend(headline(data))
    for section in sections(data):
        lines.append("")
        lines.extend(render_section(section))
    return "\n".join(lines) + "\n"
