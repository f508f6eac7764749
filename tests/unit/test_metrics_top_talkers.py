"""Top talkers: only metrics.top_talkers hosts by address, every host in its group's totals."""

from __future__ import annotations

import re
import textwrap

from prometheus_client import CollectorRegistry, generate_latest

from gatewayd.apply.nft import Counter, HostBytes, host_bytes
from gatewayd.compile import marks
from gatewayd.compile.kernel_names import HOST_BYTES
from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.lab.gateway import metric_value
from gatewayd.metrics.base import CollectorSet
from gatewayd.metrics.top_talkers import TopTalkerCollector
from gatewayd.policy.loader import load_policy_text
from tests.unit.test_metrics_connections import FixedPlan

POLICY = textwrap.dedent("""\
    version: 1
    interfaces: { lan: lan0, wan: wan0, upload: 20mbit, download: 50mbit }
    classes: { default: { priority: 3 } }
    groups:
      staff: { members: [192.0.2.0/25, "2001:db8:1::/64"] }
      guest: { members: [192.0.2.128/25] }
    metrics: { top_talkers: 3 }
    """)


class FixedHostBytes:
    def __init__(self, by_set: dict[str, list[HostBytes]]) -> None:
        self.by_set = by_set
        self.sets_read: list[str] = []

    def host_bytes(self, set_name: str) -> list[HostBytes]:
        self.sets_read.append(set_name)
        return self.by_set.get(set_name, [])


def element(plan: Plan, address: str, group: str, direction: str, sent: int) -> HostBytes:
    bits = marks.group_bits(plan.numbering.groups.numbers[group])
    return HostBytes(address, bits, direction, Counter(packets=sent // 100 or 1, bytes=sent))


def scrape(plan: Plan, kernel: FixedHostBytes) -> str:
    collector = TopTalkerCollector(FixedPlan(plan))
    collector._kernel = kernel
    registry = CollectorRegistry()
    registry.register(CollectorSet([collector]))
    return generate_latest(registry).decode()


def test_only_the_busiest_hosts_by_both_directions_get_an_address_label() -> None:
    plan = compile_plan(load_policy_text(POLICY, "p.yaml"))
    staff_hosts = [element(plan, f"192.0.2.{n}", "staff", "original", 1000 * n) for n in range(1, 11)]
    kernel = FixedHostBytes({
        HOST_BYTES[4]: [*staff_hosts,
                        element(plan, "192.0.2.200", "guest", "original", 100),
                        element(plan, "192.0.2.200", "guest", "reply", 50_000)],  # mostly downloads
        HOST_BYTES[6]: [element(plan, "2001:db8:1::5", "staff", "reply", 9_500)],
    })
    text = scrape(plan, kernel)
    assert sorted(kernel.sets_read) == sorted(HOST_BYTES.values())
    talkers = set(re.findall(r'^gatewayd_top_talker_bytes\{.*host="([^"]+)"', text, re.MULTILINE))
    assert talkers == {"192.0.2.200", "192.0.2.10", "2001:db8:1::5"}
    assert metric_value(text, "gatewayd_top_talker_bytes", host="192.0.2.200", group="guest",
                        direction="download") == 50_000
    assert metric_value(text, "gatewayd_top_talker_bytes", host="192.0.2.200", group="guest",
                        direction="upload") == 100
    # The group totals count every host, not only the top three.
    assert metric_value(text, "gatewayd_active_host_bytes", group="staff", direction="upload") == 55_000
    assert metric_value(text, "gatewayd_active_host_bytes", group="staff", direction="download") == 9_500
    assert metric_value(text, "gatewayd_active_hosts", group="staff") == 11
    assert metric_value(text, "gatewayd_active_hosts", group="guest") == 1


def test_top_talkers_zero_exports_no_address() -> None:
    plan = compile_plan(load_policy_text(POLICY.replace("top_talkers: 3", "top_talkers: 0"), "p.yaml"))
    text = scrape(plan, FixedHostBytes({HOST_BYTES[4]: [element(plan, "192.0.2.1", "staff", "original", 10)]}))
    assert "gatewayd_top_talker_bytes{" not in text
    assert metric_value(text, "gatewayd_active_hosts", group="staff") == 1


def test_host_bytes_reads_nft_json_elements() -> None:
    listing = [{"set": {"name": HOST_BYTES[4], "elem": [
        {"elem": {"val": {"concat": ["192.0.2.7", 0x4000, "reply"]}, "expires": 3500,
                  "counter": {"packets": 3, "bytes": 4500}}},
        {"elem": {"val": {"concat": ["192.0.2.8", 0x4000, "original"]}, "expires": 3500}},  # no counter: skipped
    ]}}]
    assert host_bytes(listing) == [HostBytes("192.0.2.7", 0x4000, "reply", Counter(3, 4500))]
