"""Benchmark gatewayd's QoS in lab namespaces (root); every figure comes from this one run.

1. Rate accuracy: a per-host ceiling (download and upload), achieved / configured,
   as the HTB class's wire rate and as the receiver's TCP goodput.
2. Latency under load: RTT of a realtime-class probe (UDP ping-pong to the
   DingTalk address) while bulk TCP saturates a 50 Mbit/s WAN made with a shaper
   at the far side (the internet namespace shapes isp0 egress, and its ingress
   through an IFB). "No QoS": gatewayd not running, the queue builds at the far
   side. "QoS": gatewayd shapes at 96% of the link, so the queue forms in its
   priority classes instead. Target: loaded RTT <= idle RTT + 5 ms.
3. Jain fairness index across 8 hosts of one group downloading at once (>= 0.95).
4. Scale: compile and apply time of a policy with 5,000 per-host limits (cold,
   then a reload that changes one host); host classes are made on a host's
   first packet, so also the time to make every host's classes at once
   (in-process, and end to end: 5,000 addresses each sending a packet through
   the running daemon); and bulk throughput through a host in a 5,000-host
   map, every class made, divided by the same with a 10-host map (>= 0.95).

    python bench/qos.py [--seconds 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewayd.lab import traffic
from gatewayd.lab.gateway import GatewayDaemon, metric_value
from gatewayd.lab.services import DEFAULT_SITES, DNS_SERVER_V4, IPERF_PORTS, IPERF_SERVER_V4, IPERF_SERVER_V6
from gatewayd.lab.shaping import (
    IperfJob,
    RttResult,
    concurrent_rates,
    iperf_rate,
    jain_index,
    start_iperf_servers,
    steady_host_rate,
    udp_rtt,
)
from gatewayd.lab.topology import GATEWAY, INTERNET, HostSpec, Lab

REPO = Path(__file__).resolve().parents[1]
WAN_MBIT = 50
FAR_SIDE_QUEUE_PACKETS = 400  # an ISP modem's generous buffer: ~100 ms at 50 Mbit/s
DINGTALK = DEFAULT_SITES["dingtalk"]
EXTRA_IPERF_PORTS = [5205, 5206, 5207, 5208]


def host(n: int) -> HostSpec:
    return HostSpec(f"192.0.2.{n}", f"2001:db8:1::{n}", f"02:00:00:00:{n // 256:02x}:{n % 256:02x}")


# --- 1 and 3: rate accuracy and fairness ---------------------------------------------------

ACCURACY_POLICY = """\
version: 1
interfaces: { lan: lan0, wan: wan0, upload: 30mbit, download: 30mbit }
classes:
  default: { priority: 3 }
groups:
  capped:
    members: [192.0.2.20]
    per_host: { upload: { limit: 5mbit }, download: { limit: 12mbit } }
  eight:  # equal weights: each host's guarantee is 1/8 of the link (less a margin)
    members: [192.0.2.40-192.0.2.47]
    per_host: { guaranteed: 12% }
"""


def measure_accuracy(lab: Lab, policy: Path, seconds: float) -> list[tuple[str, float, float]]:
    rows = []
    daemon = GatewayDaemon(lab, policy, log_name="bench-accuracy.log").start()
    try:
        for direction, device, ceiling in (("download", "lan0", 12e6), ("upload", "wan0", 5e6)):
            job = IperfJob("capped", IPERF_SERVER_V4, IPERF_PORTS[0], seconds, download=direction == "download")
            wire, goodput = steady_host_rate(lab, device, "192.0.2.20", job)
            rows.append((direction, wire / ceiling, goodput / ceiling))
    finally:
        daemon.stop()
    return rows


def measure_fairness(lab: Lab, policy: Path, seconds: float) -> tuple[float, list[float]]:
    daemon = GatewayDaemon(lab, policy, log_name="bench-fairness.log").start()
    try:
        ports = [*IPERF_PORTS, *EXTRA_IPERF_PORTS]
        jobs = [IperfJob(f"eight{i}", IPERF_SERVER_V4, ports[i], seconds) for i in range(8)]
        rates = concurrent_rates(lab, jobs)
    finally:
        daemon.stop()
    return jain_index(rates), rates


# --- 2: latency under load -----------------------------------------------------------------

LATENCY_POLICY = f"""\
version: 1
interfaces: {{ lan: lan0, wan: wan0, upload: {WAN_MBIT * 96 // 100}mbit, download: {WAN_MBIT * 96 // 100}mbit }}
classes:
  realtime: {{ priority: 0, guaranteed: 20% }}
  default:  {{ priority: 3, guaranteed: 50% }}
  bulk:     {{ priority: 7, guaranteed: 5% }}
groups:
  staff: {{ members: [192.0.2.0/26] }}
dns: {{ resolvers: [{DNS_SERVER_V4}] }}  # answers teach the kernel DingTalk's address only from these
rules:
  - {{ name: calls, apps: [dingtalk], class: realtime }}
"""


def far_side_shaper(lab: Lab) -> None:
    """The ISP's 50 Mbit/s, both directions, with the ISP's deep buffer, in the internet namespace."""
    rate = f"{WAN_MBIT}mbit"
    commands = [
        ["tc", "qdisc", "add", "dev", "isp0", "root", "handle", "1:", "htb", "default", "1"],
        ["tc", "class", "add", "dev", "isp0", "parent", "1:", "classid", "1:1", "htb", "rate", rate, "ceil", rate,
         "burst", "15k", "cburst", "15k", "quantum", "1514"],
        ["tc", "qdisc", "add", "dev", "isp0", "parent", "1:1", "pfifo", "limit", str(FAR_SIDE_QUEUE_PACKETS)],
        ["ip", "link", "add", "ifb-up", "type", "ifb"],
        ["ip", "link", "set", "ifb-up", "up"],
        ["tc", "qdisc", "add", "dev", "ifb-up", "root", "handle", "1:", "htb", "default", "1"],
        ["tc", "class", "add", "dev", "ifb-up", "parent", "1:", "classid", "1:1", "htb", "rate", rate, "ceil", rate,
         "burst", "15k", "cburst", "15k", "quantum", "1514"],
        ["tc", "qdisc", "add", "dev", "ifb-up", "parent", "1:1", "pfifo", "limit", str(FAR_SIDE_QUEUE_PACKETS)],
        ["tc", "qdisc", "add", "dev", "isp0", "handle", "ffff:", "ingress"],
        ["tc", "filter", "add", "dev", "isp0", "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0",
         "action", "mirred", "egress", "redirect", "dev", "ifb-up"],
    ]
    for argv in commands:
        lab.run(INTERNET, argv)


def rtt_under_load(lab: Lab, seconds: float) -> tuple[RttResult, RttResult, list[float]]:
    """(idle RTT, RTT while bulk saturates both directions, the bulk rates)."""
    idle = udp_rtt(lab, "caller", DINGTALK.ipv4 or "", count=100)
    probe_seconds = seconds  # the probe stops at this time, however slow the echoes (the load outlasts it)
    load = [IperfJob("downloader", IPERF_SERVER_V4, IPERF_PORTS[0], probe_seconds + 6, streams=4, omit_seconds=0),
            IperfJob("uploader", IPERF_SERVER_V4, IPERF_PORTS[1], probe_seconds + 6, download=False, streams=4,
                     omit_seconds=0)]
    rates: list[float] = []
    runner = threading.Thread(target=lambda: rates.extend(concurrent_rates(lab, load)))
    runner.start()
    time.sleep(3)  # past slow start: the queues are full
    loaded = udp_rtt(lab, "caller", DINGTALK.ipv4 or "", count=int(seconds / 0.02), max_seconds=probe_seconds)
    runner.join(probe_seconds + 40)
    if len(rates) != 2:
        raise RuntimeError("the bulk load did not run (see the lab's iperf3 logs)")
    return idle, loaded, rates


def measure_latency(lab: Lab, policy: Path, seconds: float) -> dict[str, tuple[RttResult, RttResult, list[float]]]:
    results = {"no QoS": rtt_under_load(lab, seconds)}
    daemon = GatewayDaemon(lab, policy, log_name="bench-latency.log").start()
    try:
        # The caller resolves DingTalk first, as the app does: the kernel learns its address.
        traffic.dns_query(lab, "caller", DINGTALK.hostname, "A")
        results["gatewayd QoS"] = rtt_under_load(lab, seconds)
    finally:
        daemon.stop()
    return results


# --- 4: scale ------------------------------------------------------------------------------

SCALE_FIRST_HOST = 0x1000  # the scale policy's hosts: 2001:db8:1::1000 onwards


def scale_policy(last_host: int, link: str) -> str:
    return textwrap.dedent(f"""\
        version: 1
        interfaces: {{ lan: lan0, wan: wan0, upload: {link}, download: {link} }}
        classes:
          default: {{ priority: 3 }}
        groups:
          staff:
            members: ["2001:db8:1::1000-2001:db8:1::{0x1000 + last_host - 1:x}"]
            per_host: {{ guaranteed: 100kbit }}
        """)


APPLY_TIMING = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from gatewayd.policy.loader import load_policy_text
from gatewayd.compile.plan import compile_plan
from gatewayd.apply.applier import Applier
text = open(sys.argv[2]).read()
t0 = time.monotonic(); policy = load_policy_text(text, "scale.yaml"); t1 = time.monotonic()
plan = compile_plan(policy); t2 = time.monotonic()
applier = Applier()
applier.apply(plan, None); t3 = time.monotonic()
# Worst case for on-demand classes: every limited host sends its first packet at once.
from gatewayd.daemon.host_classes import MAX_HOSTS_PER_POLL
everyone = [str(h.address) for h in plan.host_slots.hosts]
for start in range(0, len(everyone), MAX_HOSTS_PER_POLL):
    applier.make_host_classes(plan, everyone[start:start + MAX_HOSTS_PER_POLL])
t3b = time.monotonic()
changed = text.replace("per_host: { guaranteed: 100kbit }",
                       "per_host: { guaranteed: 100kbit }\n    exceptions: { 2001:db8:1::1000: { limit: 5mbit } }")
t4 = time.monotonic(); again = compile_plan(load_policy_text(changed, "scale.yaml"), plan); t5 = time.monotonic()
applier.apply(again, plan); t6 = time.monotonic()
classes = sum(len(t.classes) for t in plan.tc_trees)
applier.teardown(again)
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.3f} {t3b - t3:.3f} {t5 - t4:.3f} {t6 - t5:.3f} {classes}")
"""


def measure_apply(lab: Lab, tmp: Path, hosts: int) -> list[float]:
    path = tmp / f"scale-{hosts}.yaml"
    path.write_text(scale_policy(hosts, "1gbit"))
    out = lab.exec_python(GATEWAY, APPLY_TIMING, args=[str(REPO), str(path)], timeout=180).stdout
    return [float(x) for x in out.split()]


def measure_lookup_cost(lab: Lab, tmp: Path, seconds: float, rounds: int) -> tuple[float, float]:
    policies = {}
    for hosts in (10, 5000):
        policies[hosts] = tmp / f"fast-{hosts}.yaml"
        policies[hosts].write_text(scale_policy(hosts, "10gbit"))
    results: dict[int, list[float]] = {10: [], 5000: []}
    cpu_per_gigabit: dict[int, list[float]] = {10: [], 5000: []}
    crowd_seconds: list[float] = []
    give_addresses(lab, "measured", SCALE_FIRST_HOST, 5000)
    for _ in range(rounds):
        for hosts, policy in policies.items():
            daemon = GatewayDaemon(lab, policy, log_name=f"bench-lookup-{hosts}.log").start(timeout=120)
            try:
                # Every configured host has its classes, as if all had been active: the worst case.
                # The same 5,000 addresses send in both runs, so conntrack and neighbour tables match.
                crowd_seconds.append(switch_on(lab, daemon, "measured", SCALE_FIRST_HOST, 5000, hosts))
                busy_before = busy_cpu_seconds()
                rate = iperf_rate(lab, IperfJob("measured", IPERF_SERVER_V6, IPERF_PORTS[0], seconds))
                results[hosts].append(rate)
                cpu_per_gigabit[hosts].append((busy_cpu_seconds() - busy_before) / (rate * (seconds + 1) / 1e9))
            finally:
                daemon.stop()
    print(f"5,000 hosts sending their first packet at once: all their classes made "
          f"{statistics.median(crowd_seconds[1::2]):.2f} s later (median of {rounds})")
    ratios = [many / few for few, many in zip(results[10], results[5000], strict=True)]
    print("per round, Gbit/s with 10 / with 5,000 hosts: "
          + "  ".join(f"{few / 1e9:.2f}/{many / 1e9:.2f}" for few, many in zip(results[10], results[5000], strict=True))
          + f"; ratios {' '.join(f'{r:.3f}' for r in ratios)}")
    few_cost, many_cost = statistics.median(cpu_per_gigabit[10]), statistics.median(cpu_per_gigabit[5000])
    print(f"CPU per Gbit moved (whole machine, steal excluded): {few_cost:.3f} s with 10 hosts, {many_cost:.3f} s "
          f"with 5,000; ratio 10 / 5,000 = {few_cost / many_cost:.3f} (the per-packet cost, free of this VM's "
          "throughput swings)")
    return statistics.median(results[10]), statistics.median(results[5000])


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy (user, system, irq, softirq; not idle, iowait or steal)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def give_addresses(lab: Lab, key: str, first: int, count: int) -> None:
    """`count` more IPv6 addresses on a lab host, from 2001:db8:1::`first` (hex) on: a crowd of hosts."""
    batch = "".join(f"address add 2001:db8:1::{first + i:x}/64 dev eth0 nodad\n" for i in range(count))
    lab.run(key, ["ip", "-force", "-batch", "-"], input=batch, check=False)


CROWD_SENDER = r"""
import socket, sys
first, count, server = int(sys.argv[1], 16), int(sys.argv[2]), sys.argv[3]
for i in range(count):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind((f"2001:db8:1::{first + i:x}", 0))
    s.sendto(b"hello", (server, 9))
    s.close()
"""


def switch_on(lab: Lab, daemon: GatewayDaemon, key: str, first: int, count: int, limited: int) -> float:
    """One packet from each of `count` addresses; seconds until the `limited` among them have their classes."""
    started = time.monotonic()
    lab.exec_python(key, CROWD_SENDER, args=[f"{first:x}", str(count), IPERF_SERVER_V6], timeout=60)
    while metric_value(daemon.metrics(), "gatewayd_group_host_classes", interface="lan0") < limited:
        if time.monotonic() - started > 60:
            raise RuntimeError("the hosts' classes were not all made within 60 s")
        time.sleep(0.1)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["accuracy", "fairness", "scale", "latency"], action="append",
                        help="run only these parts (default: all)")
    args = parser.parse_args()
    wanted = set(args.only or ["accuracy", "fairness", "scale", "latency"])
    hosts = {"capped": host(20), "caller": host(10), "downloader": host(11), "uploader": host(12),
             **{f"eight{i}": host(40 + i) for i in range(8)},
             "measured": HostSpec("192.0.2.30", "2001:db8:1::1005", "02:00:00:00:00:30")}
    with tempfile.TemporaryDirectory() as tmp_text, Lab(hosts=hosts) as lab:
        tmp = Path(tmp_text)
        start_iperf_servers(lab, IPERF_SERVER_V4, EXTRA_IPERF_PORTS)
        accuracy_policy = tmp / "accuracy.yaml"
        accuracy_policy.write_text(ACCURACY_POLICY)

        if "accuracy" in wanted:
            print("== rate accuracy (per-host ceiling, achieved / configured) ==")
            for direction, wire, goodput in measure_accuracy(lab, accuracy_policy, args.seconds):
                print(f"{direction:9s} wire rate {wire:.3f}   TCP goodput {goodput:.3f}")
        if "fairness" in wanted:
            print("== fairness: 8 hosts of one group downloading at once ==")
            jain, rates = measure_fairness(lab, accuracy_policy, args.seconds)
            print(f"rates Mbit/s: {' '.join(f'{r / 1e6:.2f}' for r in rates)}")
            print(f"Jain fairness index: {jain:.4f} (target >= 0.95)")
        if "scale" in wanted:
            measure_scale(lab, tmp, args.seconds, args.rounds)
        if "latency" in wanted:
            measure_and_print_latency(lab, tmp, args.seconds)
    return 0


def measure_scale(lab: Lab, tmp: Path, seconds: float, rounds: int) -> None:
    print("== scale: 5,000 per-host limits ==")
    for count in (10, 5000):
        load, compile_s, cold, everyone, recompile, reload_s, classes = measure_apply(lab, tmp, count)
        print(f"{count:5d} hosts ({int(classes)} HTB classes): load {load:.2f} s, compile {compile_s:.2f} s, "
              f"cold apply {cold:.2f} s (policy in force; host classes on first packet), "
              f"every host's classes made {everyone:.2f} s, "
              f"reload of one changed host {recompile:.2f} s compile + {reload_s:.2f} s apply")
    few, many = measure_lookup_cost(lab, tmp, seconds, rounds)
    print(f"throughput through a limited host: {few / 1e9:.2f} Gbit/s with 10 hosts configured, "
          f"{many / 1e9:.2f} Gbit/s with 5,000; ratio {many / few:.3f} (target >= 0.95)")


def measure_and_print_latency(lab: Lab, tmp: Path, seconds: float) -> None:
    print(f"== latency under load: realtime probe, {WAN_MBIT} Mbit/s WAN shaped at the far side ==")
    far_side_shaper(lab)
    latency_policy = tmp / "latency.yaml"
    latency_policy.write_text(LATENCY_POLICY)
    results = measure_latency(lab, latency_policy, seconds)
    for name, (idle, loaded, rates) in results.items():
        print(f"{name:13s} idle {idle.median_ms:6.2f} ms  loaded median {loaded.median_ms:7.2f} ms  "
              f"p95 {loaded.p95_ms:7.2f} ms  (+{loaded.median_ms - idle.median_ms:.2f} ms, lost {loaded.lost}); "
              f"bulk down {rates[0] / 1e6:.1f} / up {rates[1] / 1e6:.1f} Mbit/s")
    no_qos, qos = results["no QoS"][1], results["gatewayd QoS"][1]
    print(f"loaded RTT ratio no QoS / QoS: {no_qos.median_ms / qos.median_ms:.1f}x "
          f"(target: QoS loaded <= idle + 5 ms)")
    (down_off, up_off), (down_on, up_on) = results["no QoS"][2], results["gatewayd QoS"][2]
    shaped_bps = WAN_MBIT * 96 // 100 * 1e6
    print(f"both directions saturated: download QoS on / off {down_on / 1e6:.1f} / {down_off / 1e6:.1f} Mbit/s "
          f"= {down_on / down_off:.2f} (target >= 0.95); upload {up_on / 1e6:.1f} / {up_off / 1e6:.1f} Mbit/s; "
          f"of the shaped rate: download {down_on / shaped_bps:.2f}, upload {up_on / shaped_bps:.2f} (target >= 0.90)")


if __name__ == "__main__":
    sys.exit(main())
