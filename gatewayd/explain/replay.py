"""`gatewayd replay POLICY --pcap FILE [--against OLD]`: a capture's flows through the real classifier
and the policy's rules; with --against, only the flows whose verdict would change.

This is how an admin tests a policy change before deploying it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from gatewayd.classify.offline import FlowReport, classify_capture
from gatewayd.explain.rules import FlowFacts, RuleEngine, RuleVerdict
from gatewayd.policy.model import Policy

FlowKey = tuple[str, str, int, str, int]


@dataclass(frozen=True)
class FlowVerdict:
    flow: FlowReport
    verdict: RuleVerdict

    @property
    def key(self) -> FlowKey:
        return (self.flow.proto, self.flow.src, self.flow.sport, self.flow.dst, self.flow.dport)

    @property
    def outcome(self) -> str:
        return "block" if self.verdict.action == "block" else f"allow:{self.verdict.qos_class}"

    def as_dict(self) -> dict[str, object]:
        return {"proto": self.flow.proto, "src": self.flow.src, "sport": self.flow.sport, "dst": self.flow.dst,
                "dport": self.flow.dport, "app": self.flow.app, "method": self.flow.method,
                "evidence": self.flow.evidence, "rule": self.verdict.rule_name, "action": self.verdict.action,
                "class": self.verdict.qos_class}

    def render(self) -> str:
        result = "BLOCK" if self.verdict.action == "block" else f"allow, class {self.verdict.qos_class}"
        return (f"{self.flow.proto} {self.flow.src}:{self.flow.sport} -> {self.flow.dst}:{self.flow.dport}  "
                f"app={self.flow.app} ({self.flow.method}: {self.flow.evidence})  rule={self.verdict.rule_name}  "
                f"{result}")


def replay(policy: Policy, capture: Path, when: dt.datetime) -> list[FlowVerdict]:
    """Every flow of the capture with the verdict `policy` gives it at `when` (local time)."""
    # As in the daemon, DNS flows stay "dns": a lookup is never blocked for the app it names.
    flows = classify_capture(capture, policy.applications.values(), policy.classifier.max_packets,
                             dns_flow_takes_queried_app=False)
    engine = RuleEngine(policy)
    verdicts = []
    for flow in flows:
        try:
            source = ipaddress.ip_address(flow.src)
        except ValueError:
            continue
        verdicts.append(FlowVerdict(flow, engine.evaluate(FlowFacts(source, flow.app, when))))
    return verdicts


@dataclass(frozen=True)
class VerdictChange:
    before: FlowVerdict
    after: FlowVerdict

    def as_dict(self) -> dict[str, object]:
        flow_keys = ("proto", "src", "sport", "dst", "dport")
        return {"flow": {k: v for k, v in self.after.as_dict().items() if k in flow_keys},
                "before": {k: self.before.as_dict()[k] for k in ("app", "rule", "action", "class")},
                "after": {k: self.after.as_dict()[k] for k in ("app", "rule", "action", "class")}}

    def render(self) -> str:
        flow = self.after.flow
        def side(v: FlowVerdict) -> str:
            result = "block" if v.verdict.action == "block" else f"allow/{v.verdict.qos_class}"
            return f"{result} (app {v.flow.app}, rule {v.verdict.rule_name})"
        return (f"{flow.proto} {flow.src}:{flow.sport} -> {flow.dst}:{flow.dport}: "
                f"{side(self.before)} => {side(self.after)}")


def changes(old: list[FlowVerdict], new: list[FlowVerdict]) -> list[VerdictChange]:
    before = {verdict.key: verdict for verdict in old}
    return [VerdictChange(before[v.key], v) for v in new
            if v.key in before and (before[v.key].outcome != v.outcome or before[v.key].flow.app != v.flow.app)]


def as_json_lines(items: list[FlowVerdict] | list[VerdictChange]) -> str:
    return "".join(json.dumps(item.as_dict()) + "\n" for item in items)
