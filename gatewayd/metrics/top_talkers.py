"""The busiest office hosts by address, and per-group host totals, from the kernel's host_bytes sets.

The kernel counts every forwarded packet for its office host (compile/ruleset.py,
one set element per host, group and direction, forgotten after an idle hour).
Only the `metrics.top_talkers` hosts that moved the most bytes become labelled
series, so the address label stays bounded by the policy whatever the LAN does;
every other host is only in its group's totals.

A host's bytes are counted since its element was made: they only grow, and start
again from zero after the host was idle for the set's timeout (or on restart), so
PromQL reads them with rate()/increase() like a counter. They are gauges because
a host leaves the series when it drops out of the top N.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric

from gatewayd.apply.nft import HostBytes, NftKernel
from gatewayd.compile import marks
from gatewayd.compile.kernel_names import HOST_BYTES
from gatewayd.compile.plan import Plan
from gatewayd.metrics.base import PlanCollector

DIRECTIONS = {"original": "upload", "reply": "download"}  # nft's ct direction -> the host's point of view


class HostBytesSource(Protocol):
    def host_bytes(self, set_name: str) -> list[HostBytes]: ...


@dataclass
class HostTotals:
    group: str
    by_direction: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_direction.values())


def per_host(elements: Iterable[HostBytes], plan: Plan) -> dict[tuple[str, str], HostTotals]:
    """(address, group) -> its bytes by direction ("upload", "download")."""
    hosts: dict[tuple[str, str], HostTotals] = {}
    for element in elements:
        group = plan.numbering.group_name(marks.group_number_of(element.group_bits))
        totals = hosts.setdefault((element.address, group), HostTotals(group, {"upload": 0, "download": 0}))
        direction = DIRECTIONS.get(element.direction)
        if direction:
            totals.by_direction[direction] += element.counter.bytes
    return hosts


def top_hosts(hosts: dict[tuple[str, str], HostTotals], count: int) -> list[tuple[str, HostTotals]]:
    """The `count` hosts with the most bytes both ways; ties go to the lower address, so the set is stable."""
    busiest = heapq.nsmallest(count, hosts.items(), key=lambda item: (-item[1].total, item[0]))
    return [(address, totals) for (address, _group), totals in busiest]


class TopTalkerCollector(PlanCollector):
    _kernel: HostBytesSource | None = None
    name = "top_talkers"

    def read_plan(self, plan: Plan) -> Iterator[Metric]:
        kernel = self._kernel = self._kernel or NftKernel()
        hosts = per_host((e for set_name in HOST_BYTES.values() for e in kernel.host_bytes(set_name)), plan)
        talkers = GaugeMetricFamily(
            "gatewayd_top_talker_bytes",
            f"Bytes of the {plan.policy.metrics.top_talkers} busiest office hosts (metrics.top_talkers) since "
            "each was last idle an hour; use rate() or increase().", labels=["host", "group", "direction"])
        for address, totals in top_hosts(hosts, plan.policy.metrics.top_talkers):
            for direction, sent in totals.by_direction.items():
                talkers.add_metric([address, totals.group, direction], sent)
        group_bytes = GaugeMetricFamily(
            "gatewayd_active_host_bytes",
            "Bytes of all office hosts active in the last hour, per group (the top talkers' share is a "
            "fraction of this); use rate() or increase().", labels=["group", "direction"])
        active = GaugeMetricFamily("gatewayd_active_hosts", "Office hosts that sent or received in the last hour.",
                                   labels=["group"])
        by_group: dict[str, dict[str, int]] = defaultdict(lambda: {"upload": 0, "download": 0})
        host_count: dict[str, int] = defaultdict(int)
        for totals in hosts.values():
            host_count[totals.group] += 1
            for direction, sent in totals.by_direction.items():
                by_group[totals.group][direction] += sent
        for group in sorted(by_group):
            active.add_metric([group], host_count[group])
            for direction, sent in by_group[group].items():
                group_bytes.add_metric([group, direction], sent)
        yield talkers
        yield group_bytes
        yield active
