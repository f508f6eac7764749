"""How long new flows wait for their verdicts while the daemon reloads a policy, from both
sides: a steady probe of new flows from a lab host (client side) and the daemon's own
latency histogram and queue counters (daemon side). Shared by
tests/integration/test_verdict_path.py, which judges it, and bench/reload.py, which
prints the figures."""

from __future__ import annotations

import re

from gatewayd.lab.gateway import GatewayDaemon, metric_value
from gatewayd.lab.histogram import Buckets, bucket_increase, current_buckets
from gatewayd.lab.new_flows import NewFlow, NewFlowProbe
from gatewayd.lab.services import DEFAULT_SITES, DNS_SERVER_V4
from gatewayd.lab.topology import Lab

LATENCY = "gatewayd_classifier_latency_seconds"  # queued packet read -> verdict
MAX_QUEUED_P99_SECONDS = 0.005  # issue 12: no queued packet waits longer during a reload
SITE = DEFAULT_SITES["erp"]


def probe(lab: Lab, max_seconds: float) -> NewFlowProbe:
    """New flows from the sales host, one every 20 ms: DNS lookups (answers queued) and TCP connects."""
    assert SITE.ipv4 is not None
    return NewFlowProbe(lab, "sales", DNS_SERVER_V4, SITE.hostname, SITE.ipv4, max_seconds=max_seconds)


def queue_health_in(exposition: str) -> dict[str, float]:
    """The latency histogram (bucket <= 5 ms and count) and the queue's loss counters of one scrape."""
    return {"within": metric_value(exposition, f"{LATENCY}_bucket", le=str(MAX_QUEUED_P99_SECONDS)),
            "count": metric_value(exposition, f"{LATENCY}_count"),
            "dropped": metric_value(exposition, "gatewayd_nfqueue_dropped_packets_total"),
            "unread": metric_value(exposition, "gatewayd_nfqueue_unread_packets_total")}


def queue_health(daemon: GatewayDaemon) -> dict[str, float]:
    """The daemon's latency histogram (bucket <= 5 ms and count) and the queue's loss counters."""
    return queue_health_in(daemon.metrics())


def build_seconds(log: str) -> float:
    """The steps of a reload that run in the worker, from its `event=reloaded` line."""
    line = re.search(r"event=reloaded .*load_seconds=([\d.]+) compile_seconds=([\d.]+) classifier_seconds=([\d.]+)",
                     log)
    assert line, log
    return sum(float(value) for value in line.groups())


def apply_seconds(log: str) -> float:
    """The apply step of a reload (its nft transaction, tc, queue rule), from its `event=reloaded` line."""
    line = re.search(r"event=reloaded .*apply_seconds=([\d.]+)", log)
    assert line, log
    return float(line.group(1))


def flows_during_build(flows: list[NewFlow], reload_began: float, build_ended: float) -> list[NewFlow]:
    """The flows that began and ended while the worker read, validated and compiled the policy."""
    return [flow for flow in flows if reload_began <= flow.started and flow.started + flow.seconds <= build_ended]


def flows_meeting_apply(flows: list[NewFlow], build_ended: float, reload_ended: float) -> list[NewFlow]:
    """The flows in flight at some moment of the apply (the build's end to the `event=reloaded`
    line; the window ends when the caller saw that line, a little late)."""
    return [flow for flow in flows if build_ended <= flow.started + flow.seconds and flow.started <= reload_ended]


class VerdictsDuringReloads:
    """The daemon's and the clients' view of verdict latency, pooled over the reload windows
    (SIGHUP to `event=reloaded`); between reloads the histogram's counts are left out."""

    def __init__(self) -> None:
        self.queued = 0.0
        self.late = 0.0
        self.lost = 0.0  # dropped or unread by the queue: packets that got no verdict at all
        self.buckets: Buckets = {}
        self.windows: list[tuple[float, float, float]] = []  # reload began, build ended, reload ended
        self._before: dict[str, float] = {}
        self._before_buckets: Buckets = {}

    def before_reload(self, exposition: str) -> None:
        """`exposition`: the daemon's metrics scraped just before the SIGHUP."""
        self._before, self._before_buckets = queue_health_in(exposition), current_buckets(exposition, LATENCY)

    def after_reload(self, exposition: str, log: str, reload_began: float, reload_ended: float) -> None:
        """`exposition` scraped once `log` (since the SIGHUP) showed `event=reloaded`."""
        after = queue_health_in(exposition)
        queued = after["count"] - self._before["count"]
        self.queued += queued
        self.late += queued - (after["within"] - self._before["within"])
        self.lost += sum(after[key] - self._before[key] for key in ("dropped", "unread"))
        increase = bucket_increase(current_buckets(exposition, LATENCY), self._before_buckets)
        self.buckets = {bound: self.buckets.get(bound, 0.0) + count for bound, count in increase.items()}
        self.windows.append((reload_began, reload_began + build_seconds(log), reload_ended))

    def client_flows(self, flows: list[NewFlow]) -> tuple[list[NewFlow], list[NewFlow]]:
        """The new flows that met a build, and those that met an apply, over all the reloads."""
        during_build: list[NewFlow] = []
        meeting_apply: list[NewFlow] = []
        for began, build_ended, ended in self.windows:
            during_build += flows_during_build(flows, began, build_ended)
            meeting_apply += flows_meeting_apply(flows, build_ended, ended)
        return during_build, meeting_apply
