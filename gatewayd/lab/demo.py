"""The lab demo: an office in network namespaces behind the real gatewayd, real traffic, a short report.

Run as root: `python -m gatewayd.lab.demo` (scripts/demo sets up and runs it).
Everything it creates is removed at the end, also on Ctrl-C or error; with --keep the
lab stays up, scraped by Prometheus, until `--down` (kept_demo.py, demo_keep.py).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.lab import demo_keep, kept_demo, traffic
from gatewayd.lab.gateway import GatewayDaemon, metric_value
from gatewayd.lab.kernel_view import decode_mark, flow_mark, learned_app
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY
from gatewayd.lab.services import DEFAULT_SITES
from gatewayd.lab.topology import Lab
from gatewayd.lab.traffic import Outcome
from gatewayd.policy.loader import load_policy

BLOCKED = {Outcome.RESET, Outcome.REFUSED}


@dataclass(frozen=True)
class Visit:
    host: str
    site: str
    kind: str  # "https", "http" or "bittorrent"
    why: str


VISITS = (
    Visit("sales", "dingtalk", "https", "DingTalk for the front desk"),
    Visit("finance", "erp", "https", "ERP for the back office"),
    Visit("sales", "wechat", "https", "IM is for the front desk"),
    Visit("finance", "wechat", "https", "IM is for the front desk"),
    Visit("guest", "youku", "https", "no video for guests"),
    Visit("service", "bilibili", "https", "video is bulk for staff"),
    Visit("sales", "bittorrent", "bittorrent", "P2P is blocked"),
    Visit("manager", "bittorrent", "bittorrent", "managers may use P2P"),
    Visit("finance", "news", "https", "an app-less site"),
)


def visit(lab: Lab, plan: Plan, item: Visit) -> str:
    site = DEFAULT_SITES[item.site]
    source = OFFICE_HOSTS[item.host].ipv4
    address = site.ipv4
    if address is None:
        raise ValueError(f"demo site {item.site} has no IPv4 address")
    outcome: Outcome | None
    if item.kind == "bittorrent":
        handshake = traffic.bittorrent_handshake(lab, item.host, address)
        outcome, port = handshake.outcome, 6881
        passed = outcome == Outcome.ANSWERED
    else:
        response = traffic.https_get(lab, item.host, site.hostname, ip_version=4, timeout=5)
        outcome, port = (Outcome.OK if response.ok else response.error), 443
        passed = response.ok
    mark = flow_mark(lab, source, address, port)
    if mark is not None:
        kernel = decode_mark(plan, mark)
        app, qos_class = kernel.app, kernel.qos_class
    else:  # reset on its SYN: no conntrack entry stays, but the kernel knew the app from DNS
        app, qos_class = f"{learned_app(lab, plan, address) or '?'} (DNS)", "-"
    if passed:
        verdict = f"allowed   app={app:<11} class={qos_class}"
    elif outcome in BLOCKED:
        verdict = f"BLOCKED   app={app:<11} (TCP reset)"
    else:
        verdict = f"FAILED    ({outcome})"
    target = f"{site.hostname}" + (":6881" if item.kind == "bittorrent" else "")
    return f"  {item.host:<8} -> {target:<28} {verdict:<44} # {item.why}"


def class_bytes(daemon: GatewayDaemon, interface: str) -> dict[str, float]:
    exposition = daemon.metrics()
    names = {m.group(1) for m in re.finditer(r'gatewayd_class_bytes_total\{class="([^"]+)"', exposition)}
    return {name: metric_value(exposition, "gatewayd_class_bytes_total", interface=interface, **{"class": name})
            for name in names}


def contended_download(lab: Lab, daemon: GatewayDaemon, seconds: float) -> list[str]:
    """Video (bulk) and ERP (business) downloads at once; the rate each class got on the LAN side."""
    downloads = [("service", DEFAULT_SITES["bilibili"].hostname), ("finance", DEFAULT_SITES["erp"].hostname)]
    before = class_bytes(daemon, "lan0")
    started = time.monotonic()
    traffic.concurrent_downloads(lab, downloads, seconds)
    elapsed = time.monotonic() - started
    after = class_bytes(daemon, "lan0")
    lines = []
    for name in ("realtime", "business", "default", "bulk"):
        rate = (after.get(name, 0) - before.get(name, 0)) * 8 / elapsed / 1e6
        lines.append(f"  {name:<9} {rate:6.1f} Mbit/s")
    return lines


def show_office(lab: Lab, daemon: GatewayDaemon, plan: Plan, seconds: float) -> None:
    """The demo proper: each visit's verdict from the kernel, the classes' rates under contention, counters."""
    print("\nFlows (the app and class are read back from the kernel's conntrack mark):")
    for item in VISITS:
        print(visit(lab, plan, item))
    print(f"\nRate each class got on the LAN side while video and ERP download at once "
          f"({seconds:g} s, link 50 Mbit/s, bulk capped at 30%):")
    for line in contended_download(lab, daemon, seconds):
        print(line)
    exposition = daemon.metrics()
    print("\nCounters (Prometheus, from the daemon's /metrics):")
    resets = metric_value(exposition, 'gatewayd_blocked_packets_total', protocol='tcp')
    print(f"  blocked TCP resets: {resets:.0f}, "
          f"flows decided: {metric_value(exposition, 'gatewayd_flows_total'):.0f}, "
          f"packets queued to the classifier: {metric_value(exposition, 'gatewayd_queued_packets_total'):.0f}, "
          f"addresses learned from DNS: {metric_value(exposition, 'gatewayd_dns_learned_addresses'):.0f}")
    methods = {m: metric_value(exposition, "gatewayd_classifier_decisions_total", method=m)
               for m in ("tls-sni", "http-host", "dns-learned", "signature", "address", "dns")}
    print("  decided by: " + ", ".join(f"{m} {v:.0f}" for m, v in methods.items() if v))


def start_gateway(lab: Lab) -> GatewayDaemon:
    hosts = ", ".join(f"{k} {v.ipv4}" for k, v in OFFICE_HOSTS.items())
    print(f"  lab up: namespaces {lab.prefix}*; office hosts: {hosts}")
    daemon = GatewayDaemon(lab, OFFICE_POLICY).start()
    started = daemon.log_text()
    backend = re.search(r"queue_backend=(\S+)", started)
    leaf = re.search(r"leaf_qdisc=(\S+)", started)
    print(f"  gatewayd up: nft table inet gatewayd, HTB on wan0 (upload) and lan0 (download), "
          f"NFQUEUE via {backend.group(1) if backend else '?'}, leaf queues {leaf.group(1) if leaf else '?'}")
    return daemon


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the contended download")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--keep", action="store_true", help="leave the lab running with Prometheus scraping "
                      "gatewayd, write a report and print the commands to look at it")
    mode.add_argument("--down", action="store_true", help="tear down the lab --keep left running")
    parser.add_argument("--traffic-seconds", type=float, default=kept_demo.TRAFFIC_SECONDS,
                        help="with --keep: how long the office's traffic runs before the report")
    parser.add_argument("--state-file", type=Path, default=demo_keep.DEFAULT_STATE_FILE,
                        help="with --keep and --down: where the kept lab is recorded")
    parser.add_argument(demo_keep.KEEPER_FLAG, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0 < args.traffic_seconds <= kept_demo.MAX_TRAFFIC_SECONDS:
        parser.error(f"--traffic-seconds: between 0 and {kept_demo.MAX_TRAFFIC_SECONDS:g}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.down:
        return demo_keep.tear_down(args.state_file)
    if args.keep and not args.keeper:
        return demo_keep.launch_keeper(sys.argv[1:] if argv is None else argv, args.state_file)
    policy = load_policy(str(OFFICE_POLICY))
    plan = compile_plan(policy)
    print(f"gatewayd lab demo: an office behind gatewayd running {OFFICE_POLICY.name}")
    if args.keep:
        return kept_demo.run_kept(args, plan, start_gateway, show_office)
    with Lab(hosts=OFFICE_HOSTS) as lab:
        daemon = start_gateway(lab)
        try:
            show_office(lab, daemon, plan, args.seconds)
            # No command to scrape /metrics yourself: its namespace is removed below, before anyone could run it.
        finally:
            code = daemon.stop()
            print(f"\ngatewayd stopped (exit {code}); removing the lab.")
    print("done: no namespace, table or qdisc left behind.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
