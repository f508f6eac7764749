"""Per-class bytes, packets, drops and backlog of the HTB trees, from tc statistics."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gatewayd.apply.tc import TcKernel
from gatewayd.compile.tc_tree import ROOT_MINOR
from gatewayd.compile.plan import Plan
from gatewayd.metrics.base import PlanCollector


class TcClassCollector(PlanCollector):
    _tc: TcKernel | None = None
    name = "tc_classes"

    def read_plan(self, plan: Plan) -> Iterator[Metric]:
        self._tc = self._tc or TcKernel()
        labels = ["interface", "direction", "class"]
        sent_bytes = CounterMetricFamily("gatewayd_class_bytes", "Bytes sent by a QoS class.", labels=labels)
        sent_packets = CounterMetricFamily("gatewayd_class_packets", "Packets sent by a QoS class.", labels=labels)
        drops = CounterMetricFamily("gatewayd_class_drops", "Packets a QoS class dropped.", labels=labels)
        overlimits = CounterMetricFamily("gatewayd_class_overlimits", "Times a QoS class was over its rate.", labels=labels)
        backlog = GaugeMetricFamily("gatewayd_class_backlog_bytes", "Bytes queued in a QoS class now.", labels=labels)
        for tree in plan.tc_trees:
            names = {c.minor: c.name for c in tree.classes}
            for stats in self._tc.class_stats(tree.interface):
                if stats.minor not in names:
                    continue
                values = [tree.interface, tree.direction, "total" if stats.minor == ROOT_MINOR else names[stats.minor]]
                sent_bytes.add_metric(values, stats.bytes)
                sent_packets.add_metric(values, stats.packets)
                drops.add_metric(values, stats.drops)
                overlimits.add_metric(values, stats.overlimits)
                backlog.add_metric(values, stats.backlog_bytes)
        yield from (sent_bytes, sent_packets, drops, overlimits, backlog)
