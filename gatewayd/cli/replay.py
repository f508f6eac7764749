"""`gatewayd replay POLICY --pcap F [--against OLD]`: every flow of a capture through the classifier and the rules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gatewayd.cli.explain import parse_when
from gatewayd.policy.loader import load_policy_or_report


def run(args: argparse.Namespace) -> int:
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


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("replay", help="a capture's flows through the classifier and the policy")
    parser.add_argument("policy")
    parser.add_argument("--pcap", required=True, help="a pcap or pcapng capture")
    parser.add_argument("--against", metavar="OLD_POLICY", help="print only flows whose verdict changes from OLD")
    parser.add_argument("--at", help="local time the rules are evaluated at (default: now)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)
