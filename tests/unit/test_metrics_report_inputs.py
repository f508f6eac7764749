"""What the recording rules and the report need beside the counters: each rule's action, each link's rate."""

from __future__ import annotations

import textwrap

from prometheus_client import CollectorRegistry, generate_latest

from gatewayd.apply.tc import ClassStats
from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.lab.gateway import metric_value
from gatewayd.metrics.base import CollectorSet
from gatewayd.metrics.nft_rules import rule_info
from gatewayd.metrics.tc_classes import TcClassCollector
from gatewayd.policy.loader import load_policy_text

POLICY = textwrap.dedent("""\
    version: 1
    interfaces: { lan: lan0, wan: wan0, upload: 20mbit, download: 50mbit }
    classes: { default: { priority: 3 }, bulk: { priority: 6 } }
    groups:
      staff: { members: [192.0.2.0/28] }
    rules:
      - { name: no-p2p, apps: [bittorrent], action: block }
      - { name: video-bulk, apps: [youku], class: bulk }
    classifier: { tcp_only: [youku] }
    default: { action: block }
    """)


class FixedPlan:
    def __init__(self, text: str) -> None:
        self.plan = compile_plan(load_policy_text(text, "p.yaml"))

    def current_plan(self) -> Plan:
        return self.plan


class NoClasses:
    def class_stats(self, interface: str) -> list[ClassStats]:
        return []


def test_every_rule_counter_has_its_action() -> None:
    family = rule_info(FixedPlan(POLICY).plan)
    samples = {(s.labels["rule"], s.labels["action"]) for s in family.samples}
    assert samples == {("no-p2p", "block"), ("video-bulk", "allow"), ("tcp-only", "block"), ("default", "block")}


def test_link_capacity_is_the_policys_rate_in_bytes_per_second() -> None:
    collector = TcClassCollector(FixedPlan(POLICY))
    collector._tc = NoClasses()  # type: ignore[assignment]
    registry = CollectorRegistry()
    registry.register(CollectorSet([collector]))
    text = generate_latest(registry).decode()
    assert metric_value(text, "gatewayd_link_capacity_bytes_per_second", interface="wan0",
                        direction="upload") == 20e6 / 8
    assert metric_value(text, "gatewayd_link_capacity_bytes_per_second", interface="lan0",
                        direction="download") == 50e6 / 8
