"""Connections refused by the per-host connection caps, per group (nft named counters)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from gatewayd.apply.nft import NftKernel
from gatewayd.compile.kernel_names import refused_counter
from gatewayd.compile.plan import Plan
from gatewayd.metrics.base import PlanCollector


class ConnectionCapCollector(PlanCollector):
    _kernel: NftKernel | None = None
    name = "connection_caps"

    def read_plan(self, plan: Plan) -> Iterator[Metric]:
        refused = CounterMetricFamily("gatewayd_connections_refused",
                                      "New connections refused because the host was at its group's max_connections.",
                                      labels=["group"])
        capped = [name for name, group in plan.policy.groups.items() if group.qos.max_connections is not None]
        if capped:
            self._kernel = self._kernel or NftKernel()
            counters = self._kernel.named_counters()
            for name in capped:
                counter = counters.get(refused_counter(plan.numbering.groups.numbers[name]))
                refused.add_metric([name], counter.packets if counter else 0)
        yield refused
