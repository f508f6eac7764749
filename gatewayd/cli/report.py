"""`gatewayd report`: who used what over a period, from Prometheus, as one HTML file or text tables.

    gatewayd report [--since yesterday|today|6h | --week | --month] [--group sales]
                    [--prometheus http://localhost:9090] [-o report.html | --text]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("report", help="traffic per department, top apps and talkers, blocked "
                                 "attempts and QoS over a period, read from Prometheus")
    period = parser.add_mutually_exclusive_group()
    period.add_argument("--since", metavar="WHEN", help="yesterday (the default), today, or a duration "
                        "back from now: 30m, 6h, 2d")
    period.add_argument("--week", action="store_true", help="the last 7 days")
    period.add_argument("--month", action="store_true", help="this month so far")
    parser.add_argument("--prometheus", metavar="URL", default=None,
                        help="the Prometheus server that scrapes gatewayd (default http://localhost:9090)")
    parser.add_argument("--group", help="only this department")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--output", "-o", metavar="FILE", default="gatewayd-report.html",
                        help="where the HTML report goes (default gatewayd-report.html)")
    output.add_argument("--text", action="store_true", help="print the report as tables instead")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gatewayd.report.html import render_html
    from gatewayd.report.periods import period_of
    from gatewayd.report.prometheus_api import (
        DEFAULT_URL,
        PrometheusClient,
        ReportError,
    )
    from gatewayd.report.text import render_text
    from gatewayd.report.usage import gather

    try:
        period = period_of(args.since, args.week, args.month)
        data = gather(PrometheusClient(args.prometheus or DEFAULT_URL), period, args.group)
        if args.text:
            sys.stdout.write(render_text(data))
            return 0
        path = Path(args.output)
        path.write_text(render_html(data))
    except ReportError as exc:
        print(f"gatewayd report: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the output file
        print(f"gatewayd report: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"gatewayd report: {period.label} written to {path}")
    return 0
