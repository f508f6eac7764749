"""Shared pieces: the current plan as seen by collectors, and scrape bookkeeping."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gatewayd.compile.plan import Plan

log = logging.getLogger("gatewayd.metrics")


class PlanSource(Protocol):
    def current_plan(self) -> Plan | None: ...


@dataclass(frozen=True)
class Scrape:
    """What one collector read, whether it worked and how long it took."""

    metrics: list[Metric]
    success: bool
    duration_seconds: float


class SourceCollector:
    """Reads one source; a CollectorSet reports, like node_exporter, whether the read worked and how long it took."""

    name = "base"

    def __init__(self) -> None:
        self._lock = threading.Lock()  # scrapes may overlap; kernel handles are not shared between threads

    def scrape(self) -> Scrape:
        start = time.perf_counter()
        with self._lock:
            try:
                metrics = list(self.read())
            except Exception as exc:  # a failing source must not break the whole scrape
                log.warning("event=collector_failed collector=%s error=%r", self.name, str(exc))
                return Scrape([], False, time.perf_counter() - start)
        return Scrape(metrics, True, time.perf_counter() - start)

    def read(self) -> Iterator[Metric]:
        raise NotImplementedError


class CollectorSet(Collector):
    """All source collectors behind one registry entry.

    The exposition format allows one HELP/TYPE block per metric name, so the per-collector
    success and duration gauges are two families with one sample per collector, not one
    family per collector (promtool and OpenMetrics parsers refuse repeated families).
    """

    def __init__(self, collectors: Sequence[SourceCollector], after_scrape: Callable[[], None] = lambda: None) -> None:
        """`after_scrape`: runs once all collectors have read (the daemon gives the C heap they freed back)."""
        self._collectors = list(collectors)
        self._after_scrape = after_scrape

    def collect(self) -> Iterator[Metric]:
        duration = GaugeMetricFamily("gatewayd_scrape_collector_duration_seconds",
                                     "How long a collector took to read its source.", labels=["collector"])
        ok = GaugeMetricFamily("gatewayd_scrape_collector_success",
                               "Whether a collector read its source (1) or failed (0).", labels=["collector"])
        for collector in self._collectors:
            scrape = collector.scrape()
            yield from scrape.metrics
            duration.add_metric([collector.name], scrape.duration_seconds)
            ok.add_metric([collector.name], 1.0 if scrape.success else 0.0)
        self._after_scrape()
        yield duration
        yield ok


class PlanCollector(SourceCollector):
    """A collector that labels what it reads with the names of the plan in force."""

    def __init__(self, plans: PlanSource) -> None:
        super().__init__()
        self._plans = plans

    def read(self) -> Iterator[Metric]:
        plan = self._plans.current_plan()
        if plan is not None:
            yield from self.read_plan(plan)

    def read_plan(self, plan: Plan) -> Iterator[Metric]:
        raise NotImplementedError
