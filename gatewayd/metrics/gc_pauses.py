"""How long Python's cyclic garbage collector held the daemon still, per generation.

A collection holds the GIL: no verdict is given while it runs, whichever
thread triggered it. gc.callbacks are called at the start and the end of
every collection; the time between is the pause. Counted from the moment the
daemon is ready (the start's own full collection, before any verdict, is not).
Exported as the histogram gatewayd_gc_pause_seconds{generation} and the
longest pause so far, gatewayd_gc_pause_longest_seconds{generation}: the
figure the queued-packet latency target (p99 <= 1 ms) is about.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

log = logging.getLogger("gatewayd.daemon")

LONG_PAUSE_SECONDS = 0.001  # the queued-packet p99 target: a longer pause is logged, with its thread
PAUSE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
GENERATIONS = (0, 1, 2)


class GcPauses:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._counts = {g: [0] * (len(PAUSE_BUCKETS) + 1) for g in GENERATIONS}
        self._sums = dict.fromkeys(GENERATIONS, 0.0)
        self.longest = dict.fromkeys(GENERATIONS, 0.0)
        self._started = 0.0
        self._started_cpu = 0.0  # the collecting thread's CPU time: wall - CPU is time it was not running
        if registry is not None:
            registry.register(self)

    def install(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # Called with the GIL held, one collection at a time: no lock needed.
        if phase == "start":
            self._started = time.perf_counter()
            self._started_cpu = time.thread_time()
            return
        seconds = time.perf_counter() - self._started
        generation = int(info.get("generation", 2))
        self.record(generation, seconds)
        if seconds >= LONG_PAUSE_SECONDS:
            log.info("event=gc_pause_long generation=%d ms=%.2f cpu_ms=%.2f collected=%d thread=%s", generation,
                     seconds * 1e3, (time.thread_time() - self._started_cpu) * 1e3, int(info.get("collected", 0)),
                     threading.current_thread().name)

    def record(self, generation: int, seconds: float) -> None:
        generation = min(max(generation, 0), 2)
        self._counts[generation][bisect_left(PAUSE_BUCKETS, seconds)] += 1
        self._sums[generation] += seconds
        self.longest[generation] = max(self.longest[generation], seconds)

    def count(self, generation: int) -> int:
        return sum(self._counts[generation])

    def collect(self) -> Iterable[Metric]:
        histogram = HistogramMetricFamily("gatewayd_gc_pause_seconds",
                                          "Pauses of Python's cyclic garbage collector (GIL held: no verdict "
                                          "meanwhile), by generation collected, since the daemon was ready.",
                                          labels=["generation"])
        longest = GaugeMetricFamily("gatewayd_gc_pause_longest_seconds",
                                    "The longest garbage-collector pause since the daemon was ready, by generation.",
                                    labels=["generation"])
        for generation in GENERATIONS:
            counts, running, buckets = list(self._counts[generation]), 0, []
            for bound, count in zip((*map(str, PAUSE_BUCKETS), "+Inf"), counts, strict=True):
                running += count
                buckets.append((bound, float(running)))
            histogram.add_metric([str(generation)], buckets, self._sums[generation])
            longest.add_metric([str(generation)], self.longest[generation])
        yield histogram
        yield longest

    def describe(self) -> Iterable[Metric]:
        yield HistogramMetricFamily("gatewayd_gc_pause_seconds", "", labels=["generation"])
        yield GaugeMetricFamily("gatewayd_gc_pause_longest_seconds", "", labels=["generation"])
