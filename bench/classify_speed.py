"""Classifier speed, from one run (root, lab namespaces), and offline replay speed.

1. LIVE new-flow rate: the real daemon between the lab office and internet;
   an asyncio client opens TCP connections that each send one TLS ClientHello
   (SNI of a catalog app) to an asyncio sink; every flow goes NFQUEUE ->
   classifier -> verdict. Printed: flows/s the classifier decided, and flows
   per second of daemon CPU (what one core sustains: the daemon is single
   threaded, so this is the one-core capacity even when the lab client is the
   bottleneck of the wall-clock rate).
2. LATENCY at a paced 2,000 new flows/s: the daemon's own histogram
   gatewayd_classifier_latency_seconds (queued packet read -> verdict), p50/p99
   interpolated from its buckets; and end to end, TCP connect + ClientHello +
   first reply byte, measured by the client with and without gatewayd in the
   same lab, so the difference is what the queue hand-off adds.
   The daemon runs with the CPU scheduling systemd/gatewayd.service gives it
   (SCHED_RR, reset on fork: applied with chrt, the lab has no systemd), as do
   the flows-per-CPU figures; the histogram figure is also taken with the
   default scheduling, rounds alternating, so both are printed with their range.
   The histogram starts at the read: what a packet waits before it (socket,
   wake-up, the loop's other work) is printed beside it, from the kernel's
   receive timestamps (`gatewayd run --measure-queue-wait`,
   gatewayd_classifier_queue_wait_seconds).
3. OFFLINE: `gatewayd classify` over every capture in ../shared/pcaps
   (in-process, same code as the command), flows/s and MB/s, plus the command
   itself on the largest capture (start-up included).

    python3 bench/classify_speed.py [--flows 6000] [--parallel 200] [--rate 2000] [--seconds 3] [--rounds 3]
        [--live-only | --offline-only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gateway import SINK, client_hello, fast_policy, measure_flows  # noqa: E402

from gatewayd.classify.offline import classify_capture  # noqa: E402
from gatewayd.lab.captures import DEVELOPMENT_SET, capture_set  # noqa: E402
from gatewayd.lab.gateway import GatewayDaemon, metric_value  # noqa: E402
from gatewayd.lab.histogram import current_buckets, histogram_quantile  # noqa: E402
from gatewayd.lab.office import OFFICE_HOSTS  # noqa: E402
from gatewayd.lab.topology import INTERNET, Lab  # noqa: E402
from gatewayd.lab.unit_scheduling import unit_scheduling_prefix  # noqa: E402
from gatewayd.policy.applications import load_catalog  # noqa: E402

SINK_ADDRESS, SINK_PORT, ECHO_PORT = "203.0.113.60", 9443, 9444
SNI = "im.dingtalk.com"
# The lab's load generators (client, sink) share the gateway's 2 cores here; on a router
# nothing competes with the daemon. Running them at the lowest CPU priority keeps their
# use of the CPU from showing up as the classifier's latency. Applied to both runs of
# the end-to-end comparison alike.
LOW_PRIORITY = ["nice", "-n", "19"]
PCAPS = capture_set(DEVELOPMENT_SET)
UNIT_SCHEDULING = unit_scheduling_prefix()

# Starts one connection every 1/rate s for `seconds`; prints each flow's connect+hello->first-byte time.
PACED_CLIENT = r"""
import asyncio, json, sys, time
address, port, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
hello = bytes.fromhex(sys.argv[5])
times = []
async def one():
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 5)
        writer.write(hello)
        await writer.drain()
        if await asyncio.wait_for(reader.read(1), 5):
            times.append(time.perf_counter() - start)
        writer.close()
    except Exception:
        pass
async def main():
    tasks = []
    begin = time.perf_counter()
    total = int(rate * seconds)
    for index in range(total):
        delay = begin + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one()))
    await asyncio.gather(*tasks)
    print(json.dumps({"times": times, "offered": total, "elapsed": time.perf_counter() - begin}))
asyncio.run(main())
"""


def start_sink(lab: Lab, port: int, log_name: str, reply: str = ""):  # type: ignore[no-untyped-def]
    """The asyncio sink of bench/gateway.py; with `reply`, it answers each hello (to time first bytes)."""
    argv = [*LOW_PRIORITY, sys.executable, "-c", SINK, SINK_ADDRESS, str(port)] + ([reply] if reply else [])
    sink = lab.popen(INTERNET, argv, log_name=log_name)
    deadline = time.monotonic() + 10
    while "ready" not in (lab.workdir / log_name).read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    return sink


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def live_rate(lab: Lab, policy: Path, flows: int, parallel: int) -> tuple[float, float, int]:
    return measure_flows(lab, policy, flows, parallel, client_prefix=LOW_PRIORITY, daemon_prefix=UNIT_SCHEDULING)


def paced(lab: Lab, rate: float, seconds: float) -> dict:
    result = lab.run("sales", [*LOW_PRIORITY, sys.executable, "-c", PACED_CLIENT, SINK_ADDRESS, str(ECHO_PORT),
                               str(rate), str(seconds), client_hello(SNI).hex()], timeout=seconds + 60)
    return json.loads(result.stdout)


LATENCY = "gatewayd_classifier_latency_seconds"
QUEUE_WAIT = "gatewayd_classifier_queue_wait_seconds"


class RoundFigures(NamedTuple):
    p50: float  # queued packet read -> verdict
    p99: float
    wait_p50: float  # kernel receive -> read (socket, wake-up, the loop's other work)
    wait_p99: float


def daemon_latency(lab: Lab, policy: Path, rate: float, seconds: float, scheduling: tuple[str, ...],
                   other_rates: list[float]) -> tuple[RoundFigures, dict[float, dict]]:
    """The daemon's histograms at `rate`, and paced client results by rate, for one daemon run."""
    daemon = GatewayDaemon(lab, policy, log_name="speed-latency.log").start(
        command_prefix=scheduling, extra_args=("--measure-queue-wait",))
    try:
        with_at = {r: paced(lab, r, seconds) for r in other_rates if r != rate}
        exposition = daemon.metrics()
        before = {name: current_buckets(exposition, name) for name in (LATENCY, QUEUE_WAIT)}
        decided_before = metric_value(exposition, "gatewayd_classifier_decisions_total", method="tls-sni")
        with_at[rate] = paced(lab, rate, seconds)
        exposition = daemon.metrics()
        figures = RoundFigures(*(histogram_quantile(exposition, name, share, before[name])
                                 for name in (LATENCY, QUEUE_WAIT) for share in (0.50, 0.99)))
        decided = metric_value(exposition, "gatewayd_classifier_decisions_total", method="tls-sni") - decided_before
        # Since the daemon was ready (the other rates' paced runs included): a pause holds every verdict.
        gc_count = sum(metric_value(exposition, "gatewayd_gc_pause_seconds_count", generation=str(g)) for g in range(3))
        gc_longest = max(metric_value(exposition, "gatewayd_gc_pause_longest_seconds", generation=str(g))
                         for g in range(3))
    finally:
        daemon.stop()
    result = with_at[rate]
    print(f"    {' '.join(scheduling) or 'default scheduling':30s} read -> verdict p50 {figures.p50 * 1e3:.3f} ms, "
          f"p99 {figures.p99 * 1e3:.3f} ms; receive -> read p50 {figures.wait_p50 * 1e3:.3f} ms, "
          f"p99 {figures.wait_p99 * 1e3:.3f} ms (achieved {result['offered'] / result['elapsed']:.0f}/s, "
          f"{int(decided)} flows decided, {len(result['times'])}/{result['offered']} answered); "
          f"GC pauses since ready: {int(gc_count)}, longest {gc_longest * 1e3:.2f} ms")
    return figures, with_at


def spread(values: list[float]) -> str:
    return f"{min(values) * 1e3:.3f}-{max(values) * 1e3:.3f} ms" if len(values) > 1 else f"{values[0] * 1e3:.3f} ms"


def live_latency(lab: Lab, policy: Path, rate: float, seconds: float, e2e_rates: list[float], rounds: int) -> None:
    sink = start_sink(lab, ECHO_PORT, "speed-echo.log", reply="!")
    unit_label = " ".join(UNIT_SCHEDULING) or "default scheduling (the unit sets none)"
    figures: dict[tuple[str, ...], list[RoundFigures]] = {(): [], UNIT_SCHEDULING: []}
    with_at: dict[tuple[str, ...], dict[float, dict]] = {}
    try:
        without = {r: paced(lab, r, seconds) for r in e2e_rates}
        print(f"latency at a paced {rate:.0f} new flows/s for {seconds:g} s, classifier, queued packet read -> "
              f"verdict (daemon histogram), {rounds} rounds alternating the daemon's scheduling:")
        for round_number in range(rounds):
            for scheduling in figures:
                # The end-to-end comparison rides on each scheduling's first round.
                extra = e2e_rates if round_number == 0 else []
                round_figures, paced_results = daemon_latency(lab, policy, rate, seconds, scheduling, extra)
                figures[scheduling].append(round_figures)
                if extra:
                    with_at[scheduling] = paced_results
    finally:
        sink.terminate()
    for scheduling, runs in figures.items():
        label = f"as systemd/gatewayd.service runs it ({unit_label})" if scheduling == UNIT_SCHEDULING \
            else "default scheduling (SCHED_OTHER, as without the unit's CPUScheduling*)"
        print(f"  {label}:\n    read -> verdict p50 {spread([r.p50 for r in runs])}, "
              f"p99 {spread([r.p99 for r in runs])}"
              + ("  (target p99 <= 1 ms)" if scheduling == UNIT_SCHEDULING else "")
              + f"\n    kernel receive -> read (before the histogram above) p50 {spread([r.wait_p50 for r in runs])}, "
              f"p99 {spread([r.wait_p99 for r in runs])}")
    print(f"  end to end, TCP connect + hello -> first reply byte (first round), "
          f"lab client/sink/daemon share {os.cpu_count()} cores:")
    for offered_rate in e2e_rates:
        for share in (0.50, 0.99):
            a = percentile(without[offered_rate]["times"], share)
            line = f"    {offered_rate:5.0f} flows/s p{int(share * 100)}: without {a * 1e3:7.3f} ms"
            for scheduling, name in ((UNIT_SCHEDULING, "unit's"), ((), "default")):
                b = percentile(with_at[scheduling][offered_rate]["times"], share)
                line += f", with gatewayd ({name}) {b * 1e3:7.3f} ms ({(b - a) * 1e3:+.3f})"
            print(line)


def offline_speed() -> None:
    issues: list = []
    apps = list(load_catalog(None, issues).values())
    captures = sorted(p for p in PCAPS.glob("*.pcap*"))
    if not captures:
        print(f"offline: no captures in {PCAPS}")
        return
    started = time.perf_counter()
    flows = sum(len(classify_capture(path, apps)) for path in captures)
    elapsed = time.perf_counter() - started
    size = sum(path.stat().st_size for path in captures)
    print(f"offline replay (gatewayd classify code path, in-process), {len(captures)} captures, "
          f"{size / 1e6:.1f} MB, {flows} flows:")
    print(f"  {flows / elapsed:.0f} flows/s, {size / 1e6 / elapsed:.1f} MB/s ({elapsed:.2f} s)")
    largest = max(captures, key=lambda path: path.stat().st_size)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gatewayd", "classify", "--pcap", str(largest)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    elapsed = time.perf_counter() - started
    print(f"  the command on the largest capture ({largest.name}, {largest.stat().st_size / 1e6:.1f} MB, "
          f"{len(done.stdout.splitlines())} flows): {elapsed:.2f} s including interpreter start-up")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=6000)
    parser.add_argument("--parallel", type=int, default=200)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--e2e-rates", default="200,1000", help="extra paced rates for the end-to-end figure")
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds per scheduling, alternating")
    parser.add_argument("--offline-only", action="store_true")
    parser.add_argument("--live-only", action="store_true", help="skip the offline replay figure")
    args = parser.parse_args()
    if not args.live_only:
        offline_speed()
    if args.offline_only:
        return 0
    with tempfile.TemporaryDirectory() as tmp, Lab(hosts=OFFICE_HOSTS) as lab:
        policy = fast_policy(Path(tmp))
        rate, per_cpu, decided = live_rate(lab, policy, args.flows, args.parallel)
        print(f"live new TCP flows decided (NFQUEUE -> TLS SNI -> verdict), {decided} flows:")
        print(f"  {rate:.0f} flows/s wall clock (bounded by the lab's Python client and sink too)")
        print(f"  {per_cpu:.0f} flows per second of daemon CPU = one core's capacity (target >= 10,000), "
              f"daemon run with: {' '.join(UNIT_SCHEDULING) or 'default scheduling'}")
        e2e_rates = sorted({float(r) for r in args.e2e_rates.split(",")} | {args.rate})
        live_latency(lab, policy, args.rate, args.seconds, e2e_rates, max(1, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
