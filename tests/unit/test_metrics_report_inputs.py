"""What the recording rules and the report need beside the counters: each rule's action, each link's rate."""

from __future__ import annotations

import shutil
import textwrap

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gatewayd.apply.tc import ClassStats
from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.lab.gateway import metric_value, promtool_problems
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


SHAPED_GROUP_POLICY = POLICY.replace("staff: { members: [192.0.2.0/28] }",
                                     "staff: { members: [192.0.2.0/28], bandwidth: { limit: 50% } }")
KERNEL_RATE_BYTES_PER_SECOND = 125_000  # what the kernel's estimator reports: bytes per second


class EveryClassBusy:
    """Each class of the plan's trees sends at the same rate, as the kernel's rate estimator reports it."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def class_stats(self, interface: str) -> list[ClassStats]:
        return [ClassStats(interface, htb_class.minor, 1_000_000, 1000, 0, 0, 0,
                           rate_bytes_per_second=KERNEL_RATE_BYTES_PER_SECOND)
                for tree in self.plan.tc_trees if tree.interface == interface for htb_class in tree.classes]


def tc_exposition(policy_text: str) -> str:
    source = FixedPlan(policy_text)
    collector = TcClassCollector(source)
    collector._tc = EveryClassBusy(source.plan)  # type: ignore[assignment]
    registry = CollectorRegistry()
    registry.register(CollectorSet([collector]))
    return generate_latest(registry).decode()


def test_class_and_group_rates_are_in_bytes_per_second() -> None:
    """Prometheus' base unit is the byte: the kernel's estimate goes out as it comes, not times 8."""
    text = tc_exposition(SHAPED_GROUP_POLICY)
    assert metric_value(text, "gatewayd_class_rate_bytes_per_second", interface="wan0", direction="upload",
                        **{"class": "total"}) == KERNEL_RATE_BYTES_PER_SECOND
    assert metric_value(text, "gatewayd_group_rate_bytes_per_second", interface="wan0", direction="upload",
                        group="staff") == KERNEL_RATE_BYTES_PER_SECOND
    assert "bits" not in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_promtool_finds_nothing_in_the_tc_families() -> None:
    text = tc_exposition(SHAPED_GROUP_POLICY)
    assert 'gatewayd_scrape_collector_success{collector="tc_classes"} 1.0' in text
    assert "gatewayd_group_rate_" in text and "gatewayd_class_rate_" in text
    assert promtool_problems(text) == []
