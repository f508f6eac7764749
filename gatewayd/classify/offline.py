"""`gatewayd classify --pcap FILE`: the daemon's classifier over a capture, one JSON object per flow.

The packets go through the same Classifier.on_packet the NFQUEUE handler
calls, in capture order with the capture's timestamps. Two differences from
the daemon, both because a capture is not a live kernel:
  * the kernel would stop queueing a flow once its address was learned or
    decided; here every packet is offered, and the engine ignores the rest;
  * flows still undecided when the capture ends get their last-resort verdict
    (port or unknown), as the kernel's give-up rule would have given them.
DNS flows take the queried name's app (as nDPI labels them) unless told not to.
As live, a DNS answer teaches an address only if it answers a query seen on its
flow (id, name, type), and never one the catalog lists; a capture has no kernel
to say which servers are the policy's resolvers, so every server counts as one.
"""

from __future__ import annotations

import collections
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from gatewayd.classify.capture import read_ip_packets
from gatewayd.classify.engine import (
    UNKNOWN_APP,
    Classifier,
    ClassifierStats,
    FlowSummary,
)
from gatewayd.classify.tables import ClassifierTables
from gatewayd.policy.model import Application

_PROTOCOL_NAMES = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah", 58: "icmpv6",
                   132: "sctp"}
OFFLINE_FLOW_TIMEOUT = float("inf")  # a capture's quiet stretches must not drop flows before they are reported


@dataclass(frozen=True)
class FlowReport:
    proto: str
    src: str
    sport: int
    dst: str
    dport: int
    app: str
    category: str
    method: str
    evidence: str
    details: str

    def as_json(self) -> str:
        record = {"proto": self.proto, "src": self.src, "sport": self.sport, "dst": self.dst,
                  "dport": self.dport, "app": self.app, "category": self.category,
                  "method": self.method, "evidence": self.evidence}
        if self.details:
            record["details"] = self.details
        return json.dumps(record)


@dataclass(frozen=True)
class CaptureResult:
    reports: list[FlowReport]  # every flow, in the order the flows were decided
    stats: ClassifierStats  # internal_errors > 0 is a classifier bug


def classify_capture(path: str | Path, apps: Iterable[Application], max_packets: int = 8,
                     dns_flow_takes_queried_app: bool = True) -> list[FlowReport]:
    """Every flow of the capture with its decision, in the order the flows were decided."""
    return replay_capture(path, apps, max_packets, dns_flow_takes_queried_app).reports


def replay_capture(path: str | Path, apps: Iterable[Application], max_packets: int = 8,
                   dns_flow_takes_queried_app: bool = True) -> CaptureResult:
    """The flows of a capture and the classifier's own counters (malformed packets, internal errors)."""
    tables = ClassifierTables.build(apps)
    classifier = Classifier(tables, max_packets=max_packets, flow_timeout=OFFLINE_FLOW_TIMEOUT,
                            max_flows=1 << 20, dns_flow_takes_queried_app=dns_flow_takes_queried_app,
                            forget_answered_lookups=False)  # a report names each flow once
    summaries: list[FlowSummary] = []
    for timestamp, packet in read_ip_packets(path):
        outcome = classifier.on_packet(packet, timestamp)
        if outcome.decision is not None:
            summary = classifier.summary_of(packet)
            if summary is not None:
                summaries.append(summary)
    summaries.extend(classifier.conclude())
    return CaptureResult([_report(summary, tables) for summary in summaries], classifier.stats)


def summary_lines(result: CaptureResult) -> list[str]:
    """What an admin reads after the per-flow lines: how flows were decided and how many stayed unknown."""
    reports = result.reports
    methods = collections.Counter(report.method for report in reports)
    unknown = sum(1 for report in reports if report.app == UNKNOWN_APP)
    share = 100.0 * unknown / len(reports) if reports else 0.0
    stats = result.stats
    return [
        f"flows: {len(reports)}, unknown: {unknown} ({share:.1f}%)",
        "by method: " + (", ".join(f"{method} {count}" for method, count in methods.most_common()) or "none"),
        (f"packets: {stats.packets}, malformed: {stats.malformed}, fragments: {stats.fragments}, "
         f"internal errors: {stats.internal_errors}"),
    ]


def _report(summary: FlowSummary, tables: ClassifierTables) -> FlowReport:
    decision = summary.decision
    app = decision.app if decision is not None else UNKNOWN_APP
    return FlowReport(
        proto=_PROTOCOL_NAMES.get(summary.proto, str(summary.proto)),
        src=summary.client, sport=summary.client_port, dst=summary.server, dport=summary.server_port,
        app=app, category=tables.categories.get(app, "unknown"),
        method=decision.method if decision is not None else "give-up",
        evidence=decision.evidence if decision is not None else "",
        details=decision.details if decision is not None else "",
    )


def write_reports(reports: Iterable[FlowReport], out: TextIO = sys.stdout) -> int:
    count = 0
    for report in reports:
        out.write(report.as_json() + "\n")
        count += 1
    return count
