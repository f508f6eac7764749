"""`gatewayd classify --pcap FILE [--policy POLICY]`: offline replay of a capture through the classifier.

One JSON object per flow on stdout, then a summary on stderr: flows per method,
the unknown share, and the classifier's counters (internal errors must be 0).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_classify(args: argparse.Namespace) -> int:
    from gatewayd.classify.capture import CaptureError
    from gatewayd.classify.offline import replay_capture, summary_lines, write_reports
    from gatewayd.policy.applications import load_catalog
    from gatewayd.policy.loader import load_policy_or_report

    max_packets = args.max_packets
    if args.policy:
        policy = load_policy_or_report(args.policy, args.catalog)
        if policy is None:
            return 1
        apps = list(policy.applications.values())
        if max_packets is None:
            max_packets = policy.classifier.max_packets
    else:
        issues: list[Any] = []
        catalog = load_catalog(args.catalog, issues)
        if issues:
            for issue in issues:
                print(issue, file=sys.stderr)
            return 1
        apps = list(catalog.values())
    try:
        result = replay_capture(args.pcap, apps, max_packets=max_packets or 8,
                                dns_flow_takes_queried_app=not args.dns_as_dns)
    except OSError as exc:
        print(f"{args.pcap}: cannot read the capture: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except CaptureError as exc:
        print(f"{args.pcap}: not a readable pcap/pcapng capture: {exc}", file=sys.stderr)
        return 1
    write_reports(result.reports)
    if not args.no_summary:
        sys.stdout.flush()
        # On stderr, so stdout stays one JSON object per line for scripts.
        for line in summary_lines(result):
            print(f"summary: {line}", file=sys.stderr)
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    classify = commands.add_parser("classify", help="classify the flows of a pcap/pcapng capture; one JSON per flow")
    classify.add_argument("--pcap", required=True, help="capture file (pcap or pcapng)")
    classify.add_argument("--policy", help="policy whose applications (catalog + own) to use")
    classify.add_argument("--max-packets", type=int, default=None,
                          help="packets per flow before giving up (default: the policy's, else 8)")
    classify.add_argument("--dns-as-dns", action="store_true",
                          help="label DNS flows 'dns' instead of the queried name's app (the daemon's way)")
    classify.add_argument("--no-summary", action="store_true",
                          help="leave out the closing summary (flows per method, unknown share) on stderr")
    classify.set_defaults(func=cmd_classify)
