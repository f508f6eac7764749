"""Memory one LAN host can take: the issue's flood of unfinished ClientHellos, from one run in lab namespaces (root).

The guest host opens 65,536 TCP flows (to a sink that accepts and holds them)
and sends each 7 segments of a ClientHello that announces 16 KB and never
finishes; the policy is office.yaml with a 1 Gbit/s link. Printed: the
daemon's RSS (now and peak) before and after, the classifier's buffered
bytes and tracked flows, flows given up and evicted, and whether a
ClientHello another host sends during the flood is still decided by its SNI.

    python bench/memory_abuse.py [--flows 65536] [--segments 7] [--seconds 240]

With --flood dns, a DNS answer flood of many distinct names instead (lab/dns_flood.py):
every office host asks --names distinct names of one app's domain, each answered by a
named resolver with --records addresses of its own. Printed: the daemon's RSS before
and after, what was learned, refused and written, the writer's book (entries, forgotten).

    python bench/memory_abuse.py --flood dns [--names 4000] [--records 16] [--seconds 120]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewayd.lab import traffic
from gatewayd.lab.dns_flood import dns_answer_flood, flood_policy
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


def dns_figures(daemon: GatewayDaemon) -> dict[str, float]:
    exposition = daemon.metrics()
    return {
        "rss_mib": daemon.memory_kib("VmRSS") / 1024,
        "peak_rss_mib": daemon.memory_kib("VmHWM") / 1024,
        "tracked_flows": metric_value(exposition, "gatewayd_classifier_flows"),
        "answers_learned": metric_value(exposition, "gatewayd_dns_answers_total", result="learned"),
        "refused_rate_limited": metric_value(exposition, "gatewayd_dns_addresses_refused_total",
                                             reason="rate_limited"),
        "refused_host_share": metric_value(exposition, "gatewayd_dns_addresses_refused_total", reason="host_share"),
        "written_to_kernel": metric_value(exposition, "gatewayd_dns_learned_total"),
        "writer_overflowed": metric_value(exposition, "gatewayd_dns_learned_overflow_total"),
        "book_entries": metric_value(exposition, "gatewayd_dns_learned_book_entries"),
        "book_forgotten": metric_value(exposition, "gatewayd_dns_learned_book_forgotten_total"),
        "kernel_learned_v6": metric_value(exposition, "gatewayd_dns_learned_addresses", family="v6"),
    }


def dns_flood(names: int, records: int, seconds: float) -> int:
    with tempfile.TemporaryDirectory() as directory, Lab(hosts=OFFICE_HOSTS) as lab:
        daemon = GatewayDaemon(lab, flood_policy(Path(directory), unshaped_office_policy(Path(directory)))).start()
        try:
            time.sleep(1.0)
            before = dns_figures(daemon)
            report = dns_answer_flood(lab, list(OFFICE_HOSTS), names, records, "wechat.com", seconds)
            daemon.wait_for_learned_writes(timeout=30)
            after = dns_figures(daemon)
        finally:
            daemon.stop()
    print(f"DNS answer flood from {len(OFFICE_HOSTS)} hosts: {report.names:,} distinct names asked, "
          f"{report.answered:,} answered with {records} addresses each ({report.addresses:,} distinct addresses), "
          f"in {report.seconds:.1f} s")
    print(f"{'':28}{'before':>12}{'after':>12}")
    for name in before:
        print(f"  {name:26}{before[name]:>12,.1f}{after[name]:>12,.1f}")
    return 0 if report.answered else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", choices=("hello", "dns"), default="hello")
    parser.add_argument("--flows", type=int, default=65536)
    parser.add_argument("--segments", type=int, default=7)
    parser.add_argument("--names", type=int, default=4000, help="--flood dns: distinct names per host")
    parser.add_argument("--records", type=int, default=16, help="--flood dns: addresses per answer")
    parser.add_argument("--seconds", type=float, default=240.0, help="deadline for opening the flows")
    args = parser.parse_args()
    if args.flood == "dns":
        return dns_flood(args.names, args.records, min(args.seconds, 240.0))
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
