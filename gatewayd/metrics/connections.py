"""Connections refused by the per-host connection caps, per group and protocol (nft named counters)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from gatewayd.apply.nft import NftKernel
from gatewayd.compile.kernel_names import REFUSED_PROTOCOLS, refused_counter
from gatewayd.compile.plan import Plan
from gatewayd.metrics.base import PlanCollector


class ConnectionCapCollector(PlanCollector):
    _kernel: NftKernel | None = None
    name = "connection_caps"

    def read_plan(self, plan: Plan) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "gatewayd_connections_refused",
            "New connections to the outside refused because the host was at its group's max_connections "
            "(tcp: connection attempts; udp and other: dropped packets).",
            labels=["group", "protocol"])
        capped = [name for name, group in plan.policy.groups.items() if group.qos.max_connections is not None]
        if capped:
            self._kernel = self._kernel or NftKernel()
            counters = self._kernel.named_counters()
            for name in capped:
                for protocol in REFUSED_PROTOCOLS:
                    counter = counters.get(refused_counter(name, protocol))
                    refused.add_metric([name, protocol], counter.packets if counter else 0)
        yield refused
