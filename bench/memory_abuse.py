"""Memory one LAN host can take: the issue's flood of unfinished ClientHellos, from one run in lab namespaces (root).

The guest host opens 65,536 TCP flows (to a sink that accepts and holds them)
and sends each 7 segments of a ClientHello that announces 16 KB and never
finishes; the policy is office.yaml with a 1 Gbit/s link. Printed: the
daemon's RSS (now and peak) before and after, the classifier's buffered
bytes and tracked flows, flows given up and evicted, and whether a
ClientHello another host sends during the flood is still decided by its SNI.

    python bench/memory_abuse.py [--flows 65536] [--segments 7] [--seconds 240]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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

MIB = 1024 * 1024


def figures(daemon: GatewayDaemon) -> dict[str, float]:
    exposition = daemon.metrics()
    return {
        "rss_mib": daemon.memory_kib("VmRSS") / 1024,
        "peak_rss_mib": daemon.memory_kib("VmHWM") / 1024,
        "buffered_mib": metric_value(exposition, "gatewayd_classifier_buffered_bytes") / MIB,
        "tracked_flows": metric_value(exposition, "gatewayd_classifier_flows"),
        "queued_packets": metric_value(exposition, "gatewayd_queued_packets_total"),
        "given_up_host_budget": metric_value(exposition, "gatewayd_flows_gave_up_total", reason="host_buffer_budget"),
        "given_up_total_budget": metric_value(exposition, "gatewayd_flows_gave_up_total", reason="total_buffer_budget"),
        "given_up_max_packets": metric_value(exposition, "gatewayd_flows_gave_up_total", reason="max_packets"),
        "evicted_host_flow_limit": metric_value(exposition, "gatewayd_classifier_flows_evicted_total",
                                                reason="host_flow_limit"),
        "sni_decisions": metric_value(exposition, "gatewayd_classifier_decisions_total", method="tls-sni"),
        "dingtalk_sales_flows": metric_value(exposition, "gatewayd_flows_total", app="dingtalk", group="sales"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=65536)
    parser.add_argument("--segments", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=240.0, help="deadline for opening the flows")
    args = parser.parse_args()
    dingtalk, sink = DEFAULT_SITES["dingtalk"], DEFAULT_SITES["news"]
    assert dingtalk.ipv4 is not None and sink.ipv4 is not None
    with tempfile.TemporaryDirectory() as directory, Lab(hosts=OFFICE_HOSTS) as lab:
        daemon = GatewayDaemon(lab, unshaped_office_policy(Path(directory))).start()
        try:
            time.sleep(1.0)
            before = figures(daemon)
            with HelloFlood(lab, "guest", sink.ipv4, args.flows, unfinished_hello(args.segments),
                            args.seconds) as flood:
                report = flood.wait_opened()
                time.sleep(2.0)  # let the queue drain
                probe = traffic.tcp_connect(lab, "sales", dingtalk.ipv4, 443, expect_bytes=1, timeout=5.0,
                                            payload=tls_client_hello(dingtalk.hostname, key_share_size=1800))
                after = figures(daemon)
        finally:
            daemon.stop()
    classified = after["dingtalk_sales_flows"] > before["dingtalk_sales_flows"] and probe.connected
    print(f"flood from guest: {report.opened:,} flows opened ({report.failed:,} failed), "
          f"{report.segments:,} segments of an unfinished ClientHello, in {report.seconds:.1f} s")
    print(f"{'':28}{'before':>12}{'after':>12}")
    for name in before:
        print(f"  {name:26}{before[name]:>12,.1f}{after[name]:>12,.1f}")
    print(f"another host's two-segment ClientHello during the flood decided by SNI: {'yes' if classified else 'NO'}")
    return 0 if classified else 1


if __name__ == "__main__":
    sys.exit(main())
