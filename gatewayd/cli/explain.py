"""`gatewayd explain POLICY --src ... --dst ... --port ...`: why would this flow get its verdict?"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import sys

from gatewayd.explain.flow import Explainer, FlowQuery, as_json, render
from gatewayd.policy.loader import load_policy_or_report

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_when(text: str | None, now: dt.datetime | None = None) -> dt.datetime:
    """'HH:MM' (today), 'mon HH:MM' (that day of this week) or 'YYYY-MM-DD HH:MM'; default now."""
    now = now or dt.datetime.now()
    if not text:
        return now
    parts = text.strip().split()
    try:
        if len(parts) == 1:
            clock = dt.datetime.strptime(parts[0], "%H:%M").time()
            return dt.datetime.combine(now.date(), clock)
        if parts[0].lower()[:3] in WEEKDAYS:
            clock = dt.datetime.strptime(parts[1], "%H:%M").time()
            day = now.date() + dt.timedelta(days=WEEKDAYS.index(parts[0].lower()[:3]) - now.weekday())
            return dt.datetime.combine(day, clock)
        return dt.datetime.strptime(text.strip(), "%Y-%m-%d %H:%M")
    except (ValueError, IndexError):
        raise ValueError(f"time {text!r} is not 'HH:MM', 'mon HH:MM' or 'YYYY-MM-DD HH:MM'") from None


def run(args: argparse.Namespace) -> int:
    policy = load_policy_or_report(args.policy, args.catalog)
    if policy is None:
        return 1
    try:
        query = FlowQuery(ipaddress.ip_address(args.src), args.dst, args.port, args.proto,
                          parse_when(args.at), args.mac.lower() if args.mac else None)
    except ValueError as exc:
        print(f"gatewayd explain: {exc}", file=sys.stderr)
        return 2
    explanation = Explainer(policy).explain(query)
    print(json.dumps(as_json(explanation)) if args.json else render(explanation))
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("explain", help="explain the verdict one flow would get, rule by rule")
    parser.add_argument("policy")
    parser.add_argument("--src", required=True, help="the office host's address")
    parser.add_argument("--dst", required=True, help="the server: an address or a host name")
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
    parser.add_argument("--at", help="local time: HH:MM, 'mon HH:MM' or 'YYYY-MM-DD HH:MM' (default: now)")
    parser.add_argument("--mac", help="the host's MAC, for groups with MAC members")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)
