"""Measuring QoS in the lab: concurrent iperf3 runs, HTB class counters, a UDP RTT probe, fairness.

Used by tests/integration/test_qos*.py and bench/qos.py. Every run is bounded
in time (iperf3 -t, probe deadlines, subprocess timeouts).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass

from gatewayd.lab.runner import NamespaceRunner
from gatewayd.lab.topology import GATEWAY, INTERNET
from gatewayd.lab.traffic import TrafficError, iperf3_report

SPAWN_SLACK_SECONDS = 15.0


class ShapingError(TrafficError):
    pass


@dataclass(frozen=True)
class IperfJob:
    host: str
    server: str
    port: int
    seconds: float
    download: bool = True  # -R: the server sends
    streams: int = 1
    omit_seconds: int = 1  # TCP slow start is not the shaper's rate
    congestion: str | None = None  # the sender's TCP congestion control (-C), e.g. "reno": loss-based, fills queues


def iperf_rate(lab: NamespaceRunner, job: IperfJob) -> float:
    """Receiver goodput in bit/s, the first `omit_seconds` left out."""
    options = ["-t", f"{job.seconds:g}", "-O", str(job.omit_seconds), "-P", str(job.streams)]
    if job.download:
        options.append("-R")
    if job.congestion:
        options += ["-C", job.congestion]
    report = iperf3_report(lab, job.host, job.server, job.port, options,
                           timeout=job.seconds + job.omit_seconds + 10)  # with traffic's spawn slack: 15 s
    return float(report["end"]["sum_received"]["bits_per_second"])


def concurrent_rates(lab: NamespaceRunner, jobs: list[IperfJob]) -> list[float]:
    """Runs the jobs at the same time; rates in the jobs' order."""
    results: list[float | BaseException] = [0.0] * len(jobs)

    def run(position: int, job: IperfJob) -> None:
        try:
            results[position] = iperf_rate(lab, job)
        except BaseException as exc:  # re-raised in the caller's thread
            results[position] = exc

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rates: list[float] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        rates.append(result)
    return rates


def start_iperf_servers(lab: NamespaceRunner, address: str, ports: list[int]) -> None:
    """Extra iperf3 servers in the internet namespace (the lab starts 4); stopped with the lab."""
    for port in ports:
        lab.popen(INTERNET, ["iperf3", "-s", "-B", address, "-p", str(port)], log_name=f"iperf3-{port}.log")
    deadline_probe = "import socket,sys,time\n" \
        "end=time.monotonic()+5\n" \
        "for p in sys.argv[2:]:\n" \
        "  while True:\n" \
        "    try:\n" \
        "      socket.create_connection((sys.argv[1], int(p)), 0.5).close(); break\n" \
        "    except OSError:\n" \
        "      if time.monotonic()>end: sys.exit(1)\n" \
        "      time.sleep(0.05)\n"
    lab.exec_python(INTERNET, deadline_probe, args=[address, *map(str, ports)], timeout=10)


def class_counters(lab: NamespaceRunner, device: str) -> dict[str, int]:
    """Bytes sent so far by every HTB class of `device` in the gateway, by class id ("1:11", "201:1000").

    Parsed from tc's text: this iproute2 has no JSON output for classes.
    """
    out = lab.run(GATEWAY, ["tc", "-s", "class", "show", "dev", device]).stdout
    counters = {}
    for match in re.finditer(r"^class htb ([0-9a-f]+:[0-9a-f]+) .*\n Sent (\d+) bytes", out, re.MULTILINE):
        counters[match.group(1)] = int(match.group(2))
    return counters


def host_class(lab: NamespaceRunner, address: str, direction: str) -> str:
    """The tc class id gatewayd gave a limited host, read back from its nft map."""
    name = "host_up_v4" if direction == "upload" else "host_down_v4"
    out = json.loads(lab.run(GATEWAY, ["nft", "-j", "list", "map", "inet", "gatewayd", name]).stdout)
    for item in out["nftables"]:
        for key, value in item.get("map", {}).get("elem", []):
            if key == address:
                return str(value)
    raise ShapingError(f"{address} is not in {name}")


def steady_host_rate(lab: NamespaceRunner, device: str, address: str, job: IperfJob) -> tuple[float, float]:
    """(bit/s the host's own HTB class on `device` sent in the middle of an iperf3 run, the run's goodput).

    The class id is read once the run is under way: gatewayd makes a host's
    classes on its first packet.
    """
    result: dict[str, float] = {}
    runner = threading.Thread(target=lambda: result.setdefault("goodput", iperf_rate(lab, job)))
    runner.start()
    time.sleep(job.omit_seconds + 1.0)
    classid = host_class(lab, address, "download" if job.download else "upload")
    start_bytes, start = class_counters(lab, device)[classid], time.monotonic()
    time.sleep(job.seconds - 2.0)
    end_bytes, end = class_counters(lab, device)[classid], time.monotonic()
    runner.join(job.seconds + 30)
    if "goodput" not in result:
        raise ShapingError(f"iperf3 from {job.host} did not finish")
    return (end_bytes - start_bytes) * 8 / (end - start), result["goodput"]


def jain_index(rates: list[float]) -> float:
    """1.0 when all are equal, 1/n when one takes everything."""
    total = sum(rates)
    squares = sum(r * r for r in rates)
    return total * total / (len(rates) * squares) if squares else 0.0


_RTT_PROBE = r"""
import json, socket, sys, time
address, port, count, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
stop = time.monotonic() + float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((address, port))
s.settimeout(1.0)
rtts, lost = [], 0
for seq in range(count):
    if time.monotonic() > stop:
        break
    sent = time.monotonic()
    s.send(seq.to_bytes(4, "big") + bytes(60))
    try:
        while True:
            data = s.recv(2048)
            if int.from_bytes(data[:4], "big") == seq:
                rtts.append((time.monotonic() - sent) * 1000)
                break
    except (socket.timeout, ConnectionRefusedError):
        lost += 1
    time.sleep(max(0.0, interval - (time.monotonic() - sent)))
print(json.dumps({"rtts": rtts, "lost": lost}))
"""


@dataclass(frozen=True)
class RttResult:
    median_ms: float
    p95_ms: float
    lost: int
    samples: int


def udp_rtt(lab: NamespaceRunner, host: str, address: str, port: int = 7, count: int = 100,
            interval: float = 0.02, max_seconds: float = 10.0) -> RttResult:
    """Small UDP ping-pongs to an echo server, like a voice call's packets: `count` or `max_seconds`."""
    proc = lab.run(host, [sys.executable, "-c", _RTT_PROBE, address, str(port), str(count), str(interval),
                          str(max_seconds)], timeout=max_seconds + 1.0 + SPAWN_SLACK_SECONDS)
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    rtts = sorted(raw["rtts"])
    if not rtts:
        raise ShapingError(f"no echo came back from {address}:{port}")
    return RttResult(statistics.median(rtts), rtts[int(0.95 * (len(rtts) - 1))], int(raw["lost"]), len(rtts))
