"""Per WAN link: up/down, probe RTT and loss, failovers and failbacks, bytes and new connections."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gatewayd.apply.nft import NftKernel
from gatewayd.compile.kernel_names import link_connections_counter
from gatewayd.compile.plan import Plan
from gatewayd.metrics.base import PlanCollector, PlanSource

SYS_CLASS_NET = Path("/sys/class/net")


class LinkReportLike(Protocol):
    """One link's health as daemon/link_health.py reports it."""

    @property
    def name(self) -> str: ...
    @property
    def probed(self) -> bool: ...
    @property
    def up(self) -> bool: ...
    @property
    def rtt_seconds(self) -> float | None: ...
    @property
    def loss(self) -> float | None: ...
    @property
    def failovers(self) -> int: ...
    @property
    def failbacks(self) -> int: ...
    @property
    def ended_connections(self) -> int: ...


class LinkSource(Protocol):
    def link_reports(self) -> Sequence[LinkReportLike]: ...


def interface_bytes(interface: str, statistic: str) -> int | None:
    try:
        return int((SYS_CLASS_NET / interface / "statistics" / statistic).read_text())
    except (OSError, ValueError):
        return None


class LinkCollector(PlanCollector):
    name = "links"
    _kernel: NftKernel | None = None

    def __init__(self, plans: PlanSource, links: LinkSource) -> None:
        super().__init__(plans)
        self._links = links

    def read_plan(self, plan: Plan) -> Iterator[Metric]:
        policy = plan.policy
        if not policy.multi_link:
            return
        up = GaugeMetricFamily("gatewayd_link_up", "1 while the WAN link takes new connections (its probes pass), "
                               "0 after it failed over.", labels=["link"])
        rtt = GaugeMetricFamily("gatewayd_link_probe_rtt_seconds", "Mean probe round-trip time over the last rounds.",
                                labels=["link"])
        loss = GaugeMetricFamily("gatewayd_link_probe_loss_ratio", "Share of the last probe rounds unanswered.",
                                 labels=["link"])
        failovers = CounterMetricFamily("gatewayd_link_failovers", "Times the link was taken out of the choice.",
                                        labels=["link"])
        failbacks = CounterMetricFamily("gatewayd_link_failbacks", "Times the link came back into the choice.",
                                        labels=["link"])
        ended = CounterMetricFamily("gatewayd_link_ended_connections", "Connections ended because their link failed.",
                                    labels=["link"])
        for report in self._links.link_reports():
            up.add_metric([report.name], 1.0 if report.up else 0.0)
            if report.rtt_seconds is not None:
                rtt.add_metric([report.name], report.rtt_seconds)
            if report.loss is not None:
                loss.add_metric([report.name], report.loss)
            failovers.add_metric([report.name], report.failovers)
            failbacks.add_metric([report.name], report.failbacks)
            ended.add_metric([report.name], report.ended_connections)
        yield from (up, rtt, loss, failovers, failbacks, ended)
        yield from self._traffic(plan)

    def _traffic(self, plan: Plan) -> Iterator[Metric]:
        self._kernel = self._kernel or NftKernel()
        counters = self._kernel.named_counters()
        numbers = plan.numbering.links.numbers
        connections = CounterMetricFamily("gatewayd_link_connections", "New connections put on the link.",
                                          labels=["link"])
        traffic = CounterMetricFamily("gatewayd_link_bytes", "Bytes through the link's interface.",
                                      labels=["link", "direction"])
        for link in plan.policy.links:
            counter = counters.get(link_connections_counter(numbers[link.name]))
            connections.add_metric([link.name], counter.packets if counter else 0)
            for direction, statistic in (("upload", "tx_bytes"), ("download", "rx_bytes")):
                value = interface_bytes(link.interface, statistic)
                if value is not None:
                    traffic.add_metric([link.name, direction], value)
        yield connections
        yield traffic
