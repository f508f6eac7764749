"""Traffic and flows per app, group, action and class, from the kernel's per-element set counters."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from gatewayd.apply.nft import NftKernel
from gatewayd.compile import marks
from gatewayd.compile.kernel_names import SET_FLOWS, SET_USAGE
from gatewayd.compile.plan import Plan
from gatewayd.metrics.base import PlanCollector


class UsageCollector(PlanCollector):
    _kernel: NftKernel | None = None
    name = "nft_usage"

    def read_plan(self, plan: Plan) -> Iterator[Metric]:
        self._kernel = self._kernel or NftKernel()
        numbering = plan.numbering
        labels = ["app", "group", "action", "class"]
        traffic_bytes = CounterMetricFamily("gatewayd_traffic_bytes",
                                            "Bytes forwarded or blocked, by app, group, action and class.",
                                            labels=labels)
        traffic_packets = CounterMetricFamily("gatewayd_traffic_packets",
                                              "Packets forwarded or blocked, by app, group, action and class.",
                                              labels=labels)
        for key, counter in sorted(self._kernel.set_counters(SET_USAGE).items()):
            action = "block" if key & marks.BLOCK_BIT else "allow"
            values = [numbering.app_name(marks.app_number_of(key)), numbering.group_name(marks.group_number_of(key)),
                      action, "none" if action == "block" else numbering.class_name(marks.class_index_of(key))]
            traffic_bytes.add_metric(values, counter.bytes)
            traffic_packets.add_metric(values, counter.packets)
        flows = CounterMetricFamily("gatewayd_flows", "Flows whose app was decided, by app and group.",
                                    labels=["app", "group"])
        for key, counter in sorted(self._kernel.set_counters(SET_FLOWS).items()):
            flows.add_metric([numbering.app_name(marks.app_number_of(key)),
                              numbering.group_name(marks.group_number_of(key))], counter.packets)
        yield traffic_bytes
        yield traffic_packets
        yield flows
