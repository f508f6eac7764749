"""Per-class and per-group bytes, packets, drops, backlog and current rate of the HTB trees, from tc.

Labels are bounded: interface, direction, group (a policy group or "shared")
and class (a policy class name, "total" for the link, or "control" for the
leaf of small control packets every class shares; both with group ""). Per-host classes
never become labels; they are summed into their group, and the number of
hosts whose queue is not empty right now is exported as a count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gatewayd.apply.tc import ClassStats, TcKernel
from gatewayd.compile.plan import Plan
from gatewayd.compile.tc_tree import HtbClass, InterfaceTree
from gatewayd.metrics.base import PlanCollector

SHARED_GROUP = "shared"


class TcClassCollector(PlanCollector):
    _tc: TcKernel | None = None
    name = "tc_classes"

    def read_plan(self, plan: Plan) -> Iterator[Metric]:
        self._tc = self._tc or TcKernel()
        labels = ["interface", "direction", "group", "class"]
        families = ClassFamilies(labels)
        groups = GroupFamilies(["interface", "direction", "group"])
        capacity = GaugeMetricFamily("gatewayd_link_capacity_bytes_per_second",
                                     "The link rate the policy gives an interface and direction (interfaces: "
                                     "upload/download): utilisation is a class's byte rate over this.",
                                     labels=["interface", "direction"])
        for tree in plan.tc_trees:
            capacity.add_metric([tree.interface, tree.direction], tree.link_bps / 8)
            by_minor = tree.by_minor()
            per_group: dict[str, list[ClassStats]] = defaultdict(list)
            group_rates: dict[str, ClassStats] = {}
            for stats in self._tc.class_stats(tree.interface):
                htb_class = by_minor.get(stats.minor)
                if htb_class is None:
                    continue
                if htb_class.role in ("link", "control", "class"):
                    families.add(self._class_labels(tree, htb_class), stats)
                if htb_class.role == "control":
                    continue  # every group's packets: in no group's sum
                if htb_class.role == "group":
                    group_rates[htb_class.group] = stats
                elif htb_class.leaf:
                    per_group[htb_class.group or SHARED_GROUP].append(stats)
            limited: dict[str, int] = defaultdict(int)
            for htb_class in tree.classes:
                if htb_class.role == "host":
                    limited[htb_class.group] += 1
            for group, leaves in per_group.items():
                groups.add([tree.interface, tree.direction, group], leaves, group_rates.get(group),
                           hosts=[s for s in leaves if by_minor[s.minor].role == "host"], limited=limited[group])
        yield from families.all()
        yield from groups.all()
        yield capacity

    @staticmethod
    def _class_labels(tree: InterfaceTree, htb_class: HtbClass) -> list[str]:
        if htb_class.role == "link":
            return [tree.interface, tree.direction, "", "total"]
        if htb_class.role == "control":
            return [tree.interface, tree.direction, "", "control"]
        return [tree.interface, tree.direction, htb_class.group or SHARED_GROUP, htb_class.qos_class]


class ClassFamilies:
    def __init__(self, labels: list[str]) -> None:
        self.bytes = CounterMetricFamily("gatewayd_class_bytes", "Bytes sent by a QoS class.", labels=labels)
        self.packets = CounterMetricFamily("gatewayd_class_packets", "Packets sent by a QoS class.", labels=labels)
        self.drops = CounterMetricFamily("gatewayd_class_drops", "Packets a QoS class dropped.", labels=labels)
        self.overlimits = CounterMetricFamily("gatewayd_class_overlimits", "Times a QoS class was over its rate.",
                                              labels=labels)
        self.backlog = GaugeMetricFamily("gatewayd_class_backlog_bytes", "Bytes queued in a QoS class now.",
                                         labels=labels)
        # A gauge of the kernel's own estimate, in the unit it keeps (bytes/s, Prometheus' base
        # unit too). Not a counter: gatewayd_class_bytes_total is that, and rate() over it is
        # what dashboards and recording rules use; this is the instant view without a range.
        self.rate = GaugeMetricFamily("gatewayd_class_rate_bytes_per_second",
                                      "A QoS class's current rate in bytes/s (the kernel's estimate, ~8 s average).",
                                      labels=labels)

    def add(self, labels: list[str], stats: ClassStats) -> None:
        self.bytes.add_metric(labels, stats.bytes)
        self.packets.add_metric(labels, stats.packets)
        self.drops.add_metric(labels, stats.drops)
        self.overlimits.add_metric(labels, stats.overlimits)
        self.backlog.add_metric(labels, stats.backlog_bytes)
        self.rate.add_metric(labels, stats.rate_bytes_per_second)

    def all(self) -> tuple[Metric, ...]:
        return (self.bytes, self.packets, self.drops, self.overlimits, self.backlog, self.rate)


class GroupFamilies:
    def __init__(self, labels: list[str]) -> None:
        self.bytes = CounterMetricFamily("gatewayd_group_bytes", "Bytes sent by a group's queues (hosts included).",
                                         labels=labels)
        self.drops = CounterMetricFamily("gatewayd_group_drops", "Packets a group's queues dropped.", labels=labels)
        self.backlog = GaugeMetricFamily("gatewayd_group_backlog_bytes", "Bytes queued in a group's queues now.",
                                         labels=labels)
        self.rate = GaugeMetricFamily("gatewayd_group_rate_bytes_per_second",
                                      "A group's current rate in bytes/s (groups with bandwidth settings; the "
                                      "kernel's estimate, ~8 s average).", labels=labels)
        self.hosts = GaugeMetricFamily("gatewayd_group_limited_hosts", "Hosts of a group with per-host limits.",
                                       labels=labels)
        self.made = GaugeMetricFamily("gatewayd_group_host_classes",
                                      "Limited hosts of a group whose classes are made (on their first packet).",
                                      labels=labels)
        self.busy = GaugeMetricFamily("gatewayd_group_hosts_backlogged",
                                      "Limited hosts of a group whose queue is not empty now (at their ceiling).",
                                      labels=labels)

    def add(self, labels: list[str], leaves: list[ClassStats], group_class: ClassStats | None,
            hosts: list[ClassStats], limited: int) -> None:
        self.bytes.add_metric(labels, sum(s.bytes for s in leaves))
        self.drops.add_metric(labels, sum(s.drops for s in leaves))
        self.backlog.add_metric(labels, sum(s.backlog_bytes for s in leaves))
        if group_class is not None:
            self.rate.add_metric(labels, group_class.rate_bytes_per_second)
        if limited:
            self.hosts.add_metric(labels, limited)
            self.made.add_metric(labels, len(hosts))
            self.busy.add_metric(labels, sum(1 for s in hosts if s.backlog_bytes > 0))

    def all(self) -> tuple[Metric, ...]:
        return (self.bytes, self.drops, self.backlog, self.rate, self.hosts, self.made, self.busy)
