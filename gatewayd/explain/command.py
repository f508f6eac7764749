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


def run_replay(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gatewayd.classify.capture import CaptureError
    from gatewayd.explain.replay import as_json_lines, changes, replay

    policy = load_policy_or_report(args.policy, args.catalog)
    old_policy = load_policy_or_report(args.against, args.catalog) if policy and args.against else None
    if policy is None or (args.against and old_policy is None):
        return 1
    try:
        when = parse_when(args.at)
        new = replay(policy, Path(args.pcap), when)
        old = replay(old_policy, Path(args.pcap), when) if old_policy else None
    except (ValueError, OSError, CaptureError) as exc:
        print(f"gatewayd replay: {exc}", file=sys.stderr)
        return 2
    if old is None:
        sys.stdout.write(as_json_lines(new) if args.json else "".join(v.render() + "\n" for v in new))
        return 0
    changed = changes(old, new)
    if args.json:
        sys.stdout.write(as_json_lines(changed))
    else:
        sys.stdout.write("".join(change.render() + "\n" for change in changed))
    print(f"{len(changed)} of {len(new)} flows change verdict", file=sys.stderr if args.json else sys.stdout)
    return 0


def add_replay_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("replay", help="a capture's flows through the classifier and the policy")
    parser.add_argument("policy")
    parser.add_argument("--pcap", required=True, help="a pcap or pcapng capture")
    parser.add_argument("--against", metavar="OLD_POLICY", help="print only flows whose verdict changes from OLD")
    parser.add_argument("--at", help="local time the rules are evaluated at (default: now)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run_replay)


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
