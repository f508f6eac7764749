"""Benchmark the LAN guard under a SYN flood, from one run in lab namespaces (root).

A legitimate bulk TCP flow (iperf3, finance -> internet) is measured without a
flood, then while another LAN host floods SYNs at an internet address with
hping3 --flood (as fast as it can here, bounded in time by `timeout`).
The office policy is loaded with its link rates raised to 10 Gbit/s (so the
figure is not the shaper's) and the SYN limit lowered to 200/s per source.

Prints: the flood's achieved rate, the flow's throughput with / without the
flood and their ratio, how much of the flood the guard dropped, and CPU shares
during the flood: the whole machine's softirq time (where the kernel rules run,
for every namespace, the attack tool's own sending included) and the gatewayd
daemon's own CPU (nothing per packet runs in Python, so it should stay ~0).

    python bench/guard.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewayd.lab import traffic
from gatewayd.lab.gateway import GatewayDaemon, metric_value
from gatewayd.lab.office import OFFICE_HOSTS, OFFICE_POLICY
from gatewayd.lab.services import IPERF_SERVER_V4
from gatewayd.lab.topology import HostSpec, Lab

FLOODER = HostSpec("192.0.2.67", "2001:db8:1::67", "02:00:00:00:00:67")
SYN_LIMIT = "{ rate: 200/second, burst: 400 }"


def bench_policy(tmp: Path) -> Path:
    text = OFFICE_POLICY.read_text()
    text, rates = re.subn(r"(?m)^(  (upload|download):) .*$", r"\1 10gbit", text)
    text, limits = re.subn(r"(?m)^(    syn: +)\{.*\}$", rf"\1{SYN_LIMIT}", text)
    assert rates == 2 and limits == 1, "office.yaml's interfaces or flood section moved; update the benchmark"
    path = tmp / "office-guard-bench.yaml"
    path.write_text(text)
    return path


def cpu_times() -> list[int]:
    """Aggregate jiffies from /proc/stat: user nice system idle iowait irq softirq steal."""
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    hosts = {"finance": OFFICE_HOSTS["finance"], "flooder": FLOODER}
    with tempfile.TemporaryDirectory() as tmp, Lab(hosts=hosts) as lab:
        daemon = GatewayDaemon(lab, bench_policy(Path(tmp)), log_name="bench-guard.log").start()
        try:
            assert daemon.process is not None
            quiet = traffic.iperf3(lab, "finance", IPERF_SERVER_V4, seconds=args.seconds)
            dropped_before = metric_value(daemon.metrics(), "gatewayd_guard_dropped_packets_total", reason="syn_flood")
            flood_seconds = args.seconds + 3
            # --flood is as fast as hping3 goes (it ignores -c), so `timeout` is the bound.
            flood = lab.popen("flooder", ["timeout", "-s", "INT", f"{flood_seconds:g}", "hping3", "-S", "-p", "80",
                                          "--flood", IPERF_SERVER_V4], log_name="bench-hping3.log")
            time.sleep(1.0)
            cpu_before, daemon_before = cpu_times(), process_cpu_seconds(daemon.process.pid)
            wall_before = time.monotonic()
            flooded = traffic.iperf3(lab, "finance", IPERF_SERVER_V4, seconds=args.seconds)
            cpu_after, daemon_after = cpu_times(), process_cpu_seconds(daemon.process.pid)
            wall_after = time.monotonic()
            flood.wait(flood_seconds + 5)
            dropped = (metric_value(daemon.metrics(), "gatewayd_guard_dropped_packets_total", reason="syn_flood")
                       - dropped_before)
        finally:
            daemon.stop()
        sent_match = re.search(r"(\d+) packets transmitted", (lab.workdir / "bench-hping3.log").read_text())
    sent = int(sent_match.group(1)) if sent_match else 0
    total = sum(cpu_after) - sum(cpu_before)
    softirq_share = (cpu_after[6] - cpu_before[6]) / total if total else 0.0
    busy_share = 1 - ((cpu_after[3] + cpu_after[4]) - (cpu_before[3] + cpu_before[4])) / total if total else 0.0
    daemon_share = (daemon_after - daemon_before) / (wall_after - wall_before)
    print("LAN guard under a SYN flood (lab namespaces, office policy, links at 10 Gbit/s, SYN limit 200/s)")
    print(f"  flood: {sent} SYNs sent in <= {flood_seconds:g} s (~{sent / flood_seconds:,.0f} packets/s); "
          f"guard dropped {dropped:,.0f}")
    print(f"  bulk TCP flow without flood: {quiet / 1e9:.2f} Gbit/s")
    print(f"  bulk TCP flow during flood:  {flooded / 1e9:.2f} Gbit/s")
    print(f"  throughput ratio (during / without): {flooded / quiet:.2f}")
    print(f"  CPU during the flood (all {len(cpu_before) and _cpus()} cores): softirq {softirq_share:.1%}, "
          f"busy {busy_share:.1%}; gatewayd daemon {daemon_share:.1%} of one core")
    return 0


def _cpus() -> int:
    return sum(1 for line in Path("/proc/stat").read_text().splitlines() if re.match(r"cpu\d+ ", line))


if __name__ == "__main__":
    sys.exit(main())
