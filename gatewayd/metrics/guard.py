"""The LAN guard: drops by reason and the blocklist's size, from the guard tables' counters."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gatewayd.apply.guard_state import read_blocklist
from gatewayd.apply.nft import NftKernel
from gatewayd.compile.guard import REASON_HOST_SWEEP, REASON_PORT_SCAN, REASONS
from gatewayd.compile.kernel_names import GUARD_TABLE_NAME, SYN_PROXY_COUNTER
from gatewayd.compile.plan import Plan
from gatewayd.metrics.base import PlanCollector


class GuardCollector(PlanCollector):
    _kernel: NftKernel | None = None
    name = "guard"

    def read_plan(self, plan: Plan) -> Iterator[Metric]:
        if not plan.guard.tables:
            return
        self._kernel = self._kernel or NftKernel()
        packets = dict.fromkeys(REASONS, 0)
        dropped_bytes = dict.fromkeys(REASONS, 0)
        for family, counters in plan.guard.counters.items():
            if not counters:
                continue
            for item in self._kernel.query(f"list counters table {family} {GUARD_TABLE_NAME}"):
                counter = item.get("counter")
                if counter and counter.get("name") in counters:
                    reason = counters[counter["name"]]
                    packets[reason] = packets.get(reason, 0) + counter.get("packets", 0)
                    dropped_bytes[reason] = dropped_bytes.get(reason, 0) + counter.get("bytes", 0)
        configured = {reason for counters in plan.guard.counters.values() for reason in counters.values()}
        dropped = CounterMetricFamily("gatewayd_guard_dropped_packets",
                                      "Packets the LAN guard dropped, by reason.", labels=["reason"])
        dropped_b = CounterMetricFamily("gatewayd_guard_dropped_bytes",
                                        "Bytes the LAN guard dropped, by reason.", labels=["reason"])
        for reason in REASONS:
            if reason in configured:
                dropped.add_metric([reason], packets[reason])
                dropped_b.add_metric([reason], dropped_bytes[reason])
        yield dropped
        yield dropped_b
        if SYN_PROXY_COUNTER in configured:
            proxied = CounterMetricFamily("gatewayd_guard_syn_proxy_packets",
                                          "SYNs and handshake ACKs the SYN proxy answered for exposed services.")
            proxied.add_metric([], packets.get(SYN_PROXY_COUNTER, 0))
            yield proxied
        if plan.guard.security is not None and plan.guard.security.scan is not None:
            listed = CounterMetricFamily("gatewayd_guard_blocklisted",
                                         "Times a host was put on the blocklist (scan detected).", labels=["reason"])
            for reason in (REASON_PORT_SCAN, REASON_HOST_SWEEP):
                listed.add_metric([reason], packets[reason])
            yield listed
            size = GaugeMetricFamily("gatewayd_guard_blocklist_hosts", "Hosts on the blocklist now.", labels=["family"])
            hosts = read_blocklist(self._kernel)
            size.add_metric(["ipv4"], sum(1 for h in hosts if ":" not in h.address))
            size.add_metric(["ipv6"], sum(1 for h in hosts if ":" in h.address))
            yield size

