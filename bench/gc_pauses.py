"""Garbage-collector pauses of the live daemon at a paced new-flow rate, by GC setting (root, lab).

A collection holds the GIL, so a queued packet waits for it: with the young-generation
threshold at 50,000 the previous measurement saw 2.6-5 ms pauses every 16-24 s at
2,000 flows/s, over the p99 <= 1 ms target. This runs the real daemon (the unit's
scheduling, policies/office.yaml at 10 Gbit/s as in bench/classify_speed.py) once per
setting and round, rounds alternating the settings, paces TLS new flows at --rate for
--seconds, and prints per run: collections and the longest pause per generation
(gatewayd_gc_pause_seconds / _longest_seconds, from the daemon's gc.callbacks), the
read -> verdict p99 from gatewayd_classifier_latency_seconds, and flows per second of
daemon CPU. A setting is the young threshold (gc.set_threshold's first value) that
daemon/reactor.py's settle_garbage_collector uses, set by a wrapper around `gatewayd run`.

    python bench/gc_pauses.py [--thresholds 50000,10000,2000,700] [--rate 2000] [--seconds 40] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from classify_speed import ECHO_PORT, LATENCY, UNIT_SCHEDULING, paced, start_sink  # noqa: E402
from gateway import daemon_cpu_seconds, fast_policy  # noqa: E402

from gatewayd.lab.gateway import GatewayDaemon, metric_value  # noqa: E402
from gatewayd.lab.histogram import current_buckets, histogram_quantile  # noqa: E402
from gatewayd.lab.office import OFFICE_HOSTS  # noqa: E402
from gatewayd.lab.topology import Lab  # noqa: E402

# `gatewayd run` with daemon/reactor.py's young threshold replaced (argv: threshold, then the daemon's argv).
WITH_THRESHOLD = (
    "import sys\n"
    "import gatewayd.daemon.reactor as reactor\n"
    "reactor.GC_YOUNG_THRESHOLD = int(sys.argv[1])\n"
    "sys.argv = ['gatewayd', *sys.argv[5:]]\n"  # after: python -m gatewayd
    "from gatewayd.cli import main\n"
    "sys.exit(main())\n"
)


def one_run(lab: Lab, policy: Path, threshold: int, rate: float,
            seconds: float) -> tuple[dict[str, float], list[str]]:
    prefix = (*UNIT_SCHEDULING, sys.executable, "-c", WITH_THRESHOLD, str(threshold))
    daemon = GatewayDaemon(lab, policy, log_name="gc-pauses.log").start(command_prefix=prefix)
    log_offset = daemon.log_size()
    try:
        assert daemon.process is not None
        exposition = daemon.metrics()
        latency_before = current_buckets(exposition, LATENCY)
        counts_before = {g: metric_value(exposition, "gatewayd_gc_pause_seconds_count", generation=str(g))
                         for g in (0, 1, 2)}
        decided_before = metric_value(exposition, "gatewayd_classifier_decisions_total", method="tls-sni")
        cpu_before = daemon_cpu_seconds(daemon.process.pid)
        paced(lab, rate, seconds)
        cpu = daemon_cpu_seconds(daemon.process.pid) - cpu_before
        exposition = daemon.metrics()
        figures: dict[str, float] = {
            "p99": histogram_quantile(exposition, LATENCY, 0.99, latency_before),
            "per_cpu": (metric_value(exposition, "gatewayd_classifier_decisions_total", method="tls-sni")
                        - decided_before) / max(cpu, 1e-6),
        }
        for g in (0, 1, 2):
            figures[f"count{g}"] = metric_value(exposition, "gatewayd_gc_pause_seconds_count",
                                                generation=str(g)) - counts_before[g]
            figures[f"longest{g}"] = metric_value(exposition, "gatewayd_gc_pause_longest_seconds", generation=str(g))
    finally:
        daemon.stop()
    long_pauses = [line.split("event=gc_pause_long ", 1)[1] for line in daemon.log_text(log_offset).splitlines()
                   if "event=gc_pause_long" in line]
    return figures, long_pauses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thresholds", default="50000,10000,2000,700")
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--show-long", type=int, default=5, help="pauses over 1 ms listed per run (daemon log)")
    args = parser.parse_args()
    thresholds = [int(t) for t in args.thresholds.split(",")]
    print(f"GC pauses at a paced {args.rate:.0f} new flows/s for {args.seconds:g} s per run, daemon with "
          f"{' '.join(UNIT_SCHEDULING) or 'default scheduling'}, {args.rounds} rounds alternating the settings:")
    with tempfile.TemporaryDirectory() as tmp, Lab(hosts=OFFICE_HOSTS) as lab:
        policy = fast_policy(Path(tmp))
        sink = start_sink(lab, ECHO_PORT, "gc-echo.log", reply="!")
        try:
            for round_number in range(args.rounds):
                for threshold in thresholds:
                    f, long_pauses = one_run(lab, policy, threshold, args.rate, args.seconds)
                    pauses = ", ".join(f"gen{g} {int(f[f'count{g}'])} x, longest {f[f'longest{g}'] * 1e3:.2f} ms"
                                       for g in (0, 1, 2))
                    print(f"  round {round_number + 1} young threshold {threshold:6d}: {pauses}; "
                          f"read -> verdict p99 {f['p99'] * 1e3:.3f} ms; {f['per_cpu']:.0f} flows per daemon CPU-s",
                          flush=True)
                    for line in long_pauses[:args.show_long]:
                        print(f"      pause over 1 ms: {line}")
        finally:
            sink.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
