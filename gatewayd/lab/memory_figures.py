"""The daemon's memory figures of issue 14 (section 3), shared by bench/gateway.py and bench/reload.py.

- the classifier's flow table filled to max_flows (undecided flows of 16 hosts,
  one small first segment each), measured in a process of its own with the
  same policy: what the table adds to RSS, bytes per tracked flow (RSS and
  Python heap);
- the daemon's peak RSS through a reload of a big policy (VmHWM after the
  start's peak is cleared).
"""

from __future__ import annotations

import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gatewayd.lab.big_policy import big_policy
from gatewayd.lab.gateway import GatewayDaemon
from gatewayd.lab.topology import GATEWAY, Lab

REPOSITORY = Path(__file__).resolve().parents[2]
BIG_HOSTS, BIG_DOMAINS = 5000, 100_000  # the big reload of issue 14's table

FLOW_TABLE = r"""
import gc, ipaddress, struct, sys, tracemalloc
sys.path.insert(0, sys.argv[1])
from gatewayd.classify.engine import Classifier
from gatewayd.classify.tables import ClassifierTables
from gatewayd.lab.hello_flood import unfinished_hello
from gatewayd.policy.loader import load_policy

def rss_kib():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])

policy = load_policy(sys.argv[2])
classifier = Classifier(ClassifierTables.build(policy.applications.values()),
                        max_packets=policy.classifier.max_packets, dns_flow_takes_queried_app=False)
first_segment = unfinished_hello(1, 100)[0]  # a ClientHello's start: undecided, 100 bytes buffered
server = ipaddress.IPv4Address("203.0.113.60").packed
hosts, per_host = 16, classifier.max_flows // 16  # a host may hold 1/8 of the table
gc.collect()
traced = sys.argv[3] == "heap"  # tracemalloc's own records double the RSS: a separate run for the heap
if traced:
    tracemalloc.start()
heap_before, rss_before = tracemalloc.get_traced_memory()[0], rss_kib()
for host in range(hosts):
    client = ipaddress.IPv4Address(f"192.0.2.{100 + host}").packed
    for flow in range(per_host):
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 140, 1, 0, 64, 6, 0, client, server)
        tcp = struct.pack("!HHIIBBHHH", 1024 + flow, 443, 1000, 1, 5 << 4, 0x18, 65535, 0, 0)
        classifier.on_packet(ip + tcp + first_segment, 1.0, True)
gc.collect()
heap_after, rss_after = tracemalloc.get_traced_memory()[0], rss_kib()
print(classifier.flow_count, classifier.max_flows, rss_before, rss_after, heap_after - heap_before)
"""


@dataclass(frozen=True)
class FlowTableFigures:
    flows: int
    max_flows: int
    table_kib: int  # what the full table added to the process's RSS
    heap_bytes: int  # what it added to the Python heap (tracemalloc)

    def bytes_per_flow(self) -> float:
        return self.table_kib * 1024 / self.flows

    def heap_bytes_per_flow(self) -> float:
        return self.heap_bytes / self.flows


def flow_table_figures(lab: Lab, policy: Path) -> FlowTableFigures:
    figures = []
    for what in ("rss", "heap"):
        out = lab.exec_python(GATEWAY, FLOW_TABLE, args=[str(REPOSITORY), str(policy), what],
                              timeout=300).stdout.split()
        figures.append([int(x) for x in out[-5:]])
    flows, max_flows, rss_before, rss_after, _ = figures[0]
    return FlowTableFigures(flows, max_flows, rss_after - rss_before, figures[1][4])


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


def clear_peak_rss(pid: int) -> None:
    """VmHWM starts again from the current RSS (see proc(5), clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass(frozen=True)
class ReloadPeak:
    start_kib: int  # the daemon's RSS after starting with the big policy
    peak_kib: int  # its peak RSS through one reload of it
    seconds: float  # SIGHUP -> the reload's log line


def big_reload_peak(lab: Lab, hosts: int = BIG_HOSTS, domains: int = BIG_DOMAINS) -> ReloadPeak:
    """Start the daemon with a big policy, change it, reload once (no traffic); its RSS figures."""
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "big.yaml"
        policy.write_text(big_policy(hosts, domains, 0))
        daemon = GatewayDaemon(lab, policy, log_name="bench-big-reload.log").start(timeout=120)
        try:
            assert daemon.process is not None
            time.sleep(1)
            start_kib = daemon.memory_kib()
            clear_peak_rss(daemon.process.pid)
            policy.write_text(big_policy(hosts, domains, 1))
            offset = daemon.log_size()
            sent = time.monotonic()
            daemon.signal(signal.SIGHUP)
            daemon.wait_for_log("event=reloaded", offset, timeout=60)
            seconds = time.monotonic() - sent
            return ReloadPeak(start_kib, peak_rss_kib(daemon.process.pid), seconds)
        finally:
            daemon.stop()
