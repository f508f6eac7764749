"""The kept demo (`scripts/demo --keep`), as the keeper runs it (demo_keep.py says why a keeper).

The office with a real Prometheus in the gateway namespace scraping gatewayd and
evaluating the repository's recording rules, the demo's flows, a bounded while of
office traffic, `gatewayd report` as text and as HTML, and the exact commands to look
at all of it and to tear it down. Then the lab waits for `scripts/demo --down`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gatewayd.compile.plan import Plan
from gatewayd.lab import demo_keep, traffic
from gatewayd.lab.gateway import METRICS_LISTEN, GatewayDaemon
from gatewayd.lab.office import OFFICE_HOSTS
from gatewayd.lab.prometheus_server import PrometheusServer
from gatewayd.lab.services import DEFAULT_SITES
from gatewayd.lab.topology import GATEWAY, Lab

TRAFFIC_SECONDS = 20.0
MAX_TRAFFIC_SECONDS = 600.0
# Every 2 s rather than the tests' 1 s: the lab may stay up for hours on a shared machine.
SCRAPE_INTERVAL = "2s"
REPORT_PERIOD = "1h"  # longer than the lab has lived: the report covers all of it
# Each department's usual traffic while Prometheus watches, one download per pair, over IPv4: the office
# policy puts the lab hosts' IPv4 addresses in their departments (not all of their IPv6 ones).
OFFICE_TRAFFIC = (("service", "bilibili"), ("finance", "erp"), ("sales", "dingtalk"), ("manager", "news"))
# Per download: ~4 Mbit/s each shows in every chart and leaves the shared machine's CPU alone.
RATE_LIMIT = "500K"
# One query whose answer shows the recording rules at work: usage per department and app.
EXAMPLE_QUERY = "sum by (group, app) (gatewayd:group_app_bytes:rate5m)"

StartGateway = Callable[[Lab], GatewayDaemon]
ShowOffice = Callable[[Lab, GatewayDaemon, Plan, float], None]


def run_kept(args: argparse.Namespace, plan: Plan, start_gateway: StartGateway, show_office: ShowOffice) -> int:
    """The keeper's whole run; returns when `--down` has stopped it and the lab is gone."""
    demo_keep.stop_on_signal_during_setup()
    with Lab(hosts=OFFICE_HOSTS) as lab:
        daemon = start_gateway(lab)
        prometheus = PrometheusServer(lab, scrape_interval=SCRAPE_INTERVAL)
        try:
            prometheus.start()
            print(f"  Prometheus up in the gateway namespace: {prometheus.url}, scraping gatewayd every "
                  f"{SCRAPE_INTERVAL} with the recording rules of prometheus/gatewayd.rules.yml")
            # Scraping before the traffic, so every series is born in Prometheus' view and counts.
            prometheus.wait_for_scrapes(time.time() - 2)
            show_office(lab, daemon, plan, args.seconds)
            hosts = ", ".join(f"{host} {site}" for host, site in OFFICE_TRAFFIC)
            print(f"\nOffice traffic for {args.traffic_seconds:g} s ({hosts}; {RATE_LIMIT}B/s each) ...")
            traffic.concurrent_downloads(lab, [(host, DEFAULT_SITES[site].hostname) for host, site in OFFICE_TRAFFIC],
                                         args.traffic_seconds, RATE_LIMIT, ip_version=4)
            prometheus.wait_for_scrapes(time.time())
            report_path = write_reports(lab, prometheus)
            print_commands(lab, daemon, prometheus, report_path, args.state_file)
            sys.stdout.flush()
            demo_keep.hand_over_and_wait(args.state_file, lab.prefix)
        finally:
            prometheus.stop()
            daemon.stop()
    demo_keep.forget(args.state_file, lab.prefix)
    return 0


def gatewayd_command() -> list[str]:
    """How to run this checkout's gatewayd from any directory: its virtualenv's script, else the module."""
    script = Path(sys.executable).parent / "gatewayd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gatewayd"]


def report_command(prometheus: PrometheusServer, *output: str) -> list[str]:
    return [*gatewayd_command(), "report", "--prometheus", prometheus.url, "--since", REPORT_PERIOD, *output]


def write_reports(lab: Lab, prometheus: PrometheusServer) -> Path:
    """Print `gatewayd report --text` and write the HTML report into the lab's workdir; its path."""
    text = lab.run(GATEWAY, report_command(prometheus, "--text"), timeout=60, check=False)
    print(f"\n$ gatewayd report --since {REPORT_PERIOD} --text\n{text.stdout}{text.stderr}", end="")
    report_path = lab.workdir / "report.html"
    lab.run(GATEWAY, report_command(prometheus, "-o", str(report_path)), timeout=60)
    return report_path


def print_commands(lab: Lab, daemon: GatewayDaemon, prometheus: PrometheusServer, report_path: Path,
                   state_file: Path) -> None:
    namespace = ["ip", "netns", "exec", lab.ns_name(GATEWAY)]
    commands = {
        "metrics": [*namespace, "curl", "-s", f"http://{METRICS_LISTEN}/metrics"],
        "status": [*namespace, *gatewayd_command(), "status", "--socket", str(daemon.control_socket)],
        "Prometheus": [*namespace, "curl", "-s", f"{prometheus.url}/api/v1/query", "--data-urlencode",
                       f"query={EXAMPLE_QUERY}"],
        "report": [*namespace, *report_command(prometheus, "--text")],
    }
    print(f"\nThe lab stays up (namespaces {lab.prefix}*): gatewayd, its metrics on {METRICS_LISTEN} and "
          f"Prometheus on {prometheus.url}, both on the gateway namespace's loopback. Try:")
    for name, argv in commands.items():
        print(f"  {name + ':':<14}{shlex.join(argv)}")
    print(f"  {'HTML report:':<14}{report_path}  (open it in a browser; it goes with the lab)")
    print(f"  {'tear down:':<14}{demo_keep.down_command(state_file)}")
