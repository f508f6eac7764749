"""Memory one LAN host can take: a flood of unfinished ClientHellos through the real daemon.

The guest host opens thousands of TCP flows that each send segments of a
ClientHello announcing 16 KB and never finish it. The classifier must stay
inside the host's buffer budget by giving up the guest's own oldest flows
(counted), its RSS must stay bounded, and a ClientHello from another host,
sent during the flood, must still be read and decided by its SNI.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd.classify.flow_budget import MIB, FlowBudget
from gatewayd.lab import traffic
from gatewayd.lab.gateway import GatewayDaemon, metric_value
from gatewayd.lab.hello_flood import (
    HelloFlood,
    tls_client_hello,
    unfinished_hello,
    unshaped_office_policy,
)
from gatewayd.lab.office import OFFICE_HOSTS
from gatewayd.lab.services import DEFAULT_SITES
from gatewayd.lab.topology import Lab

pytestmark = pytest.mark.integration

FLOWS = 4000  # x 1,448-byte segments: over the 4 MiB a host may buffer once a few of each are queued
SEGMENTS_PER_FLOW = 7
FLOOD_SECONDS = 25.0  # deadline for opening the flows (under the classifier's 30 s flow timeout)
# Flow state for 4,000 flows plus allocator slack; without the budget the buffers alone would be ~20 MB.
RSS_GROWTH_LIMIT_KIB = 40 * 1024


@pytest.fixture
def office(tmp_path: Path) -> Iterator[tuple[Lab, GatewayDaemon]]:
    with Lab(hosts=OFFICE_HOSTS) as lab:
        daemon = GatewayDaemon(lab, unshaped_office_policy(tmp_path)).start()
        try:
            yield lab, daemon
        finally:
            daemon.stop()


def test_a_hello_flood_stays_in_its_budget_and_others_are_still_classified(
        office: tuple[Lab, GatewayDaemon]) -> None:
    lab, daemon = office
    rss_before = daemon.memory_kib()
    before = daemon.metrics()
    dingtalk, sink = DEFAULT_SITES["dingtalk"], DEFAULT_SITES["news"]
    assert dingtalk.ipv4 is not None and sink.ipv4 is not None
    with HelloFlood(lab, "guest", sink.ipv4, FLOWS, unfinished_hello(SEGMENTS_PER_FLOW),
                    FLOOD_SECONDS) as flood:
        report = flood.wait_opened()
        assert report.opened >= FLOWS * 0.9, report
        # Another host's hello, two segments (a post-quantum-sized key share), while the flows are held.
        hello = tls_client_hello(dingtalk.hostname, key_share_size=1800)
        assert len(hello) > 1460
        # Waiting for the server's first byte (hello or alert) means the verdict has been given.
        probe = traffic.tcp_connect(lab, "sales", dingtalk.ipv4, 443, payload=hello, expect_bytes=1, timeout=5.0)
        during = daemon.metrics()
        rss_during = daemon.memory_kib()

    assert probe.connected, probe
    queued = (metric_value(during, "gatewayd_queued_packets_total")
              - metric_value(before, "gatewayd_queued_packets_total"))
    assert queued >= FLOWS * 0.9  # the flood did reach the classifier
    # ... but only at the guest's own rate: the rest of its first packets passed unqueued, so the
    # sales host's hello did not wait behind thousands of them (classifier.host_queue_rate).
    over_rate = (metric_value(during, "gatewayd_classifier_host_over_rate_packets_total")
                 - metric_value(before, "gatewayd_classifier_host_over_rate_packets_total"))
    assert over_rate > 0
    given_up = (metric_value(during, "gatewayd_flows_gave_up_total", reason="host_buffer_budget")
                - metric_value(before, "gatewayd_flows_gave_up_total", reason="host_buffer_budget"))
    assert given_up > 0
    assert metric_value(during, "gatewayd_classifier_buffered_bytes") <= FlowBudget().host_bytes + 64 * 1024
    diagnosis = "\n".join(line for line in during.splitlines()
                          if line.startswith(("gatewayd_classifier_decisions_total", "gatewayd_nfqueue",
                                              "gatewayd_flows_gave_up_total", "gatewayd_queued")))
    for name, labels in (("gatewayd_classifier_decisions_total", {"method": "tls-sni"}),
                         ("gatewayd_flows_total", {"app": "dingtalk", "group": "sales"})):
        assert metric_value(during, name, **labels) >= metric_value(before, name, **labels) + 1, (name, diagnosis)
    growth = rss_during - rss_before
    assert growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew {growth / 1024:.1f} MiB (limit {RSS_GROWTH_LIMIT_KIB // 1024} MiB)"
    print(f"\nflood: {report}; queued {queued:.0f}, over the host's rate {over_rate:.0f}; given up {given_up:.0f}; "
          f"RSS {rss_before / 1024:.1f} -> {rss_during / 1024:.1f} MiB; "
          f"buffered {metric_value(during, 'gatewayd_classifier_buffered_bytes') / MIB:.2f} MiB")
